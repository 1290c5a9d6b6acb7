// storage/expected_compat.h — std::expected and std::unexpected for a
// standard library that has none usable by the compiler at hand. Debian 12's
// clang 14 (which builds the libFuzzer target) cannot compile libstdc++ 12's
// <expected>: that needs conditionally trivial special members, which clang
// 14 lacks. This is the subset storage/ uses: construction from a value or
// an unexpected, has_value, *, ->, value, value_or, error. g++ builds never
// include it (storage/error.h picks it only without __cpp_lib_expected).
#pragma once

#include <cstdlib>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

namespace std {

template <class E>
class unexpected {
public:
    template <class Err = E>
        requires(!is_same_v<remove_cvref_t<Err>, unexpected> && is_constructible_v<E, Err>)
    constexpr explicit unexpected(Err&& e) : m_error(std::forward<Err>(e))
    {
    }
    constexpr const E& error() const& noexcept { return m_error; }
    constexpr E& error() & noexcept { return m_error; }
    constexpr E&& error() && noexcept { return std::move(m_error); }

private:
    E m_error;
};

template <class E>
unexpected(E) -> unexpected<E>;

namespace expected_detail {
template <class T>
struct is_unexpected : false_type {};
template <class E>
struct is_unexpected<unexpected<E>> : true_type {};
} // namespace expected_detail

template <class T, class E>
class expected {
public:
    using value_type = T;
    using error_type = E;

    constexpr expected() : m_v(in_place_index<0>) {}
    template <class U = T>
        requires(!is_same_v<remove_cvref_t<U>, expected> &&
                 !expected_detail::is_unexpected<remove_cvref_t<U>>::value && is_constructible_v<T, U>)
    constexpr explicit(!is_convertible_v<U, T>) expected(U&& v) : m_v(in_place_index<0>, std::forward<U>(v))
    {
    }
    template <class G>
    constexpr expected(const unexpected<G>& u) : m_v(in_place_index<1>, u.error())
    {
    }
    template <class G>
    constexpr expected(unexpected<G>&& u) : m_v(in_place_index<1>, std::move(u).error())
    {
    }

    constexpr bool has_value() const noexcept { return m_v.index() == 0; }
    constexpr explicit operator bool() const noexcept { return has_value(); }
    constexpr T& operator*() & { return *get_if<0>(&m_v); }
    constexpr const T& operator*() const& { return *get_if<0>(&m_v); }
    constexpr T&& operator*() && { return std::move(*get_if<0>(&m_v)); }
    constexpr T* operator->() { return get_if<0>(&m_v); }
    constexpr const T* operator->() const { return get_if<0>(&m_v); }
    constexpr T& value() &
    {
        if (!has_value())
            abort();
        return **this;
    }
    constexpr const T& value() const&
    {
        if (!has_value())
            abort();
        return **this;
    }
    template <class U>
    constexpr T value_or(U&& other) const&
    {
        return has_value() ? **this : static_cast<T>(std::forward<U>(other));
    }
    constexpr E& error() & { return *get_if<1>(&m_v); }
    constexpr const E& error() const& { return *get_if<1>(&m_v); }
    constexpr E&& error() && { return std::move(*get_if<1>(&m_v)); }

private:
    variant<T, E> m_v;
};

template <class E>
class expected<void, E> {
public:
    using value_type = void;
    using error_type = E;

    constexpr expected() = default;
    template <class G>
    constexpr expected(const unexpected<G>& u) : m_error(u.error())
    {
    }
    template <class G>
    constexpr expected(unexpected<G>&& u) : m_error(std::move(u).error())
    {
    }

    constexpr bool has_value() const noexcept { return !m_error.has_value(); }
    constexpr explicit operator bool() const noexcept { return has_value(); }
    constexpr void operator*() const noexcept {}
    constexpr void value() const
    {
        if (!has_value())
            abort();
    }
    constexpr E& error() & { return *m_error; }
    constexpr const E& error() const& { return *m_error; }
    constexpr E&& error() && { return std::move(*m_error); }

private:
    optional<E> m_error;
};

} // namespace std
