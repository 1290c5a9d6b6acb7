// storage/nbd/protocol.cpp — names and error mappings of the NBD constants.
#include "storage/nbd/protocol.h"

#include <cerrno>

namespace emu::storage::nbd {

std::string_view option_name(uint32_t option)
{
    switch (Option(option)) {
    case Option::ExportName: return "NBD_OPT_EXPORT_NAME";
    case Option::Abort: return "NBD_OPT_ABORT";
    case Option::List: return "NBD_OPT_LIST";
    case Option::PeekExport: return "NBD_OPT_PEEK_EXPORT";
    case Option::StartTls: return "NBD_OPT_STARTTLS";
    case Option::Info: return "NBD_OPT_INFO";
    case Option::Go: return "NBD_OPT_GO";
    case Option::StructuredReply: return "NBD_OPT_STRUCTURED_REPLY";
    case Option::ListMetaContext: return "NBD_OPT_LIST_META_CONTEXT";
    case Option::SetMetaContext: return "NBD_OPT_SET_META_CONTEXT";
    case Option::ExtendedHeaders: return "NBD_OPT_EXTENDED_HEADERS";
    }
    return "unknown option";
}

std::string_view rep_name(uint32_t rep)
{
    switch (Rep(rep)) {
    case Rep::Ack: return "NBD_REP_ACK";
    case Rep::Server: return "NBD_REP_SERVER";
    case Rep::Info: return "NBD_REP_INFO";
    case Rep::MetaContext: return "NBD_REP_META_CONTEXT";
    case Rep::ErrUnsup: return "Unsupported option";
    case Rep::ErrPolicy: return "Denied by server policy";
    case Rep::ErrInvalid: return "Invalid option";
    case Rep::ErrPlatform: return "Not supported on this platform";
    case Rep::ErrTlsReqd: return "TLS negotiation required";
    case Rep::ErrUnknown: return "No such export";
    case Rep::ErrShutdown: return "Server shutting down";
    case Rep::ErrBlockSizeReqd: return "Block size negotiation required";
    case Rep::ErrTooBig: return "Option too large";
    case Rep::ErrExtHeaderReqd: return "Extended headers required";
    }
    return "unknown reply";
}

std::string_view cmd_name(uint16_t cmd)
{
    switch (Cmd(cmd)) {
    case Cmd::Read: return "NBD_CMD_READ";
    case Cmd::Write: return "NBD_CMD_WRITE";
    case Cmd::Disc: return "NBD_CMD_DISC";
    case Cmd::Flush: return "NBD_CMD_FLUSH";
    case Cmd::Trim: return "NBD_CMD_TRIM";
    case Cmd::Cache: return "NBD_CMD_CACHE";
    case Cmd::WriteZeroes: return "NBD_CMD_WRITE_ZEROES";
    case Cmd::BlockStatus: return "NBD_CMD_BLOCK_STATUS";
    case Cmd::Resize: return "NBD_CMD_RESIZE";
    }
    return "unknown command";
}

std::string_view nbd_error_text(uint32_t error)
{
    switch (error) {
    case k_eperm: return "Operation not permitted";
    case k_eio: return "Input/output error";
    case k_enomem: return "Cannot allocate memory";
    case k_einval: return "Invalid argument";
    case k_enospc: return "No space left on device";
    case k_eoverflow: return "Value too large for defined data type";
    case k_enotsup: return "Operation not supported";
    case k_eshutdown: return "Server is shutting down";
    }
    return "Invalid argument";
}

uint32_t errno_to_nbd(int err)
{
    switch (err) {
    case EPERM:
    case EROFS:
    case EACCES: return k_eperm;
    case ENOMEM: return k_enomem;
    case EINVAL: return k_einval;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return k_enospc;
    case EOVERFLOW: return k_eoverflow;
    case ENOTSUP: return k_enotsup;
    case ESHUTDOWN: return k_eshutdown;
    }
    return k_eio;
}

int nbd_to_errno(uint32_t error)
{
    switch (error) {
    case k_eperm: return EPERM;
    case k_eio: return EIO;
    case k_enomem: return ENOMEM;
    case k_einval: return EINVAL;
    case k_enospc: return ENOSPC;
    case k_eoverflow: return EOVERFLOW;
    case k_enotsup: return ENOTSUP;
    case k_eshutdown: return ESHUTDOWN;
    }
    return EINVAL;
}

} // namespace emu::storage::nbd
