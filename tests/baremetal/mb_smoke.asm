; tests/baremetal/mb_smoke.asm — a multiboot (v1) kernel for the machine
; tests, in 32-bit protected mode: it checks the local APIC (timer, self-IPI)
; and the PIT through the 8259 and powers off through isa-debug-exit.
;
; The multiboot header uses the a.out kludge (flags bit 16), so the flat
; binary needs no ELF headers: loaded at 1 MiB, entered at `start` with
; EAX = 0x2badb002, EBX = the multiboot information, paging off.
;
; Output on COM1 (0x3f8):
;   BAREMETAL-START mb_smoke
;   lapic-timer ok / self-ipi ok / pit ok
;   BAREMETAL-OK mb_smoke
; then 0x10 to port 0xf4 (isa-debug-exit: QEMU exits with (0x10 << 1) | 1 =
; 33). A failed check prints "BAREMETAL-FAIL mb_smoke: <what>" and writes
; 0x01 (exit status 3).

%define NAME "mb_smoke"

LOAD_ADDR       equ 0x100000
MB_MAGIC        equ 0x1badb002
MB_FLAGS        equ (1 << 16) | (1 << 1) | (1 << 0) ; a.out kludge, memory info, page-aligned modules
LAPIC           equ 0xfee00000
COM1            equ 0x3f8
EXIT_PORT       equ 0xf4
VEC_PIT         equ 0x20                    ; IRQ0 after remapping the 8259 to 0x20
VEC_TIMER       equ 0x40
VEC_IPI         equ 0x41
VEC_SPURIOUS    equ 0xff
TIMEOUT_TSC_HI  equ 4                       ; 4 << 32 TSC ticks (~6 s at 2.6 GHz): a check that waits longer fails

bits 32
org LOAD_ADDR

multiboot_header:
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)
    dd multiboot_header                     ; header_addr
    dd LOAD_ADDR                            ; load_addr
    dd file_end                             ; load_end_addr
    dd bss_end                              ; bss_end_addr
    dd start                                ; entry_addr

start:
    cli
    cmp eax, 0x2badb002
    mov esi, fail_magic
    jne fail_early
    lgdt [gdt_desc]
    jmp 0x08:.reload
.reload:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov esp, stack_top
    jmp main

fail_early:
    ; The segments are the loader's (flat): report as usual.
    mov esp, stack_top
    jmp fail

main:
    call serial_init
    mov esi, msg_start
    call puts
    call pic_init
    call idt_init

    ; Local APIC: enabled in IA32_APIC_BASE and by the SVR; LINT0 = ExtINT
    ; (the 8259's INTR), LINT1 = NMI.
    mov ecx, 0x1b
    rdmsr
    and eax, 0xfffff000
    cmp eax, LAPIC
    mov esi, fail_base
    jne fail
    rdmsr
    or eax, 1 << 11
    wrmsr
    mov dword [LAPIC + 0xf0], 0x100 | VEC_SPURIOUS
    mov dword [LAPIC + 0x80], 0             ; TPR
    mov dword [LAPIC + 0x350], 0x700        ; LINT0: ExtINT
    mov dword [LAPIC + 0x360], 0x400        ; LINT1: NMI

    ; The APIC timer, periodic: three interrupts.
    mov dword [LAPIC + 0x3e0], 0x3          ; divide by 16
    mov dword [LAPIC + 0x320], (1 << 17) | VEC_TIMER
    mov dword [LAPIC + 0x380], 100000
    sti
    mov edi, timer_ticks
    mov eax, 3
    mov esi, fail_timer
    call wait_count
    mov dword [LAPIC + 0x320], (1 << 16) | VEC_TIMER ; masked
    mov dword [LAPIC + 0x380], 0
    mov esi, msg_timer
    call puts

    ; A fixed IPI to ourselves by APIC ID through the ICR.
    mov eax, [LAPIC + 0x20]
    and eax, 0xff000000
    mov [LAPIC + 0x310], eax
    mov dword [LAPIC + 0x300], (1 << 14) | VEC_IPI ; fixed, physical, assert
    mov edi, ipi_count
    mov eax, 1
    mov esi, fail_ipi
    call wait_count
    test dword [LAPIC + 0x300], 1 << 12     ; delivery status: idle again
    mov esi, fail_icr
    jnz fail
    mov esi, msg_ipi
    call puts

    ; The PIT (channel 0, mode 2, 100 Hz) through the 8259's IRQ0.
    mov al, 0x34
    out 0x43, al
    mov ax, 11932
    out 0x40, al
    mov al, ah
    out 0x40, al
    mov al, 0xfe                            ; unmask IRQ0
    out 0x21, al
    mov edi, pit_ticks
    mov eax, 3
    mov esi, fail_pit
    call wait_count
    mov al, 0xff
    out 0x21, al
    cli
    mov esi, msg_pit
    call puts

    mov esi, msg_ok
    call puts
    mov eax, 0x10
    jmp power_off

; esi: the failed check. Prints it and exits with status 3.
fail:
    cli
    push esi
    mov esi, msg_fail
    call puts
    pop esi
    call puts
    mov al, 10
    call putc
    mov eax, 0x01
power_off:
    mov dx, EXIT_PORT
    out dx, eax
.halt:
    cli
    hlt
    jmp .halt

; Waits until the dword at edi reaches eax; fails with esi on timeout.
wait_count:
    push ecx
    push ebx
    push ebp
    mov ecx, eax
    rdtsc
    mov ebx, eax                            ; deadline: edx:eax + TIMEOUT_TSC_HI << 32
    lea ebp, [edx + TIMEOUT_TSC_HI]
.loop:
    cmp [edi], ecx
    jae .done
    pause
    rdtsc
    cmp edx, ebp
    jb .loop
    ja fail
    cmp eax, ebx
    jb .loop
    jmp fail
.done:
    pop ebp
    pop ebx
    pop ecx
    ret

serial_init:
    mov dx, COM1 + 1
    xor al, al
    out dx, al                              ; no UART interrupts
    mov dx, COM1 + 3
    mov al, 0x80
    out dx, al                              ; DLAB
    mov dx, COM1
    mov al, 1
    out dx, al                              ; 115200 baud
    mov dx, COM1 + 1
    xor al, al
    out dx, al
    mov dx, COM1 + 3
    mov al, 0x03
    out dx, al                              ; 8N1
    mov dx, COM1 + 2
    mov al, 0x07
    out dx, al                              ; FIFOs on, cleared
    mov dx, COM1 + 4
    mov al, 0x03
    out dx, al                              ; DTR, RTS
    ret

; al: the byte.
putc:
    push ecx
    push edx
    push eax
    mov ecx, 1000000
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20                           ; THR empty
    jnz .send
    pause
    loop .wait
.send:
    pop eax
    mov dx, COM1
    out dx, al
    pop edx
    pop ecx
    ret

; esi: a NUL-terminated string.
puts:
    push eax
.next:
    lodsb
    test al, al
    jz .end
    call putc
    jmp .next
.end:
    pop eax
    ret

; Both 8259s initialised: vectors 0x20-0x2f, cascade on IRQ2, all masked.
pic_init:
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0x21, al
    out 0xa1, al
    mov al, 0xff
    out 0x21, al
    out 0xa1, al
    ret

; Every vector reports itself as unexpected except the ones tested.
idt_init:
    mov edx, stubs
    xor ecx, ecx
.gate:
    mov eax, edx
    call set_gate
    add edx, 16
    inc ecx
    cmp ecx, 256
    jb .gate
    mov eax, isr_timer
    mov ecx, VEC_TIMER
    call set_gate
    mov eax, isr_ipi
    mov ecx, VEC_IPI
    call set_gate
    mov eax, isr_pit
    mov ecx, VEC_PIT
    call set_gate
    mov eax, isr_ignore
    mov ecx, VEC_SPURIOUS
    call set_gate
    mov ecx, 0x27                           ; the 8259s' spurious IRQ7 and IRQ15
    call set_gate
    mov ecx, 0x2f
    call set_gate
    lidt [idt_desc]
    ret

; eax: handler, ecx: vector. A 32-bit interrupt gate, DPL 0.
set_gate:
    mov [idt + ecx * 8], ax                 ; offset 15:0
    mov word [idt + ecx * 8 + 2], 0x08
    mov word [idt + ecx * 8 + 4], 0x8e00    ; present, 32-bit interrupt gate
    push eax
    shr eax, 16
    mov [idt + ecx * 8 + 6], ax             ; offset 31:16
    pop eax
    ret

isr_timer:
    lock inc dword [timer_ticks]
    mov dword [LAPIC + 0xb0], 0             ; EOI
    iretd

isr_ipi:
    lock inc dword [ipi_count]
    mov dword [LAPIC + 0xb0], 0
    iretd

isr_pit:
    push eax
    lock inc dword [pit_ticks]
    mov al, 0x20
    out 0x20, al                            ; EOI to the master 8259
    pop eax
    iretd

isr_ignore:
    iretd

; Vector N enters at stubs + 16 * N with N on the stack.
align 16
stubs:
%assign v 0
%rep 256
    align 16
    push dword v
    jmp unexpected
%assign v v + 1
%endrep

unexpected:
    pop ebx
    mov esi, fail_unexpected
    mov al, bl
    shr al, 4
    call hex_digit
    mov [hex_slot], al
    mov al, bl
    and al, 0xf
    call hex_digit
    mov [hex_slot + 1], al
    jmp fail

hex_digit:
    add al, '0'
    cmp al, '9'
    jbe .ok
    add al, 'a' - '9' - 1
.ok:
    ret

align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff                   ; 0x08: flat 32-bit code
    dq 0x00cf92000000ffff                   ; 0x10: flat data
gdt_end:
gdt_desc:
    dw gdt_end - gdt - 1
    dd gdt
idt_desc:
    dw 256 * 8 - 1
    dd idt

align 4
timer_ticks: dd 0
ipi_count:   dd 0
pit_ticks:   dd 0

msg_start:   db "BAREMETAL-START ", NAME, 10, 0
msg_timer:   db "lapic-timer ok", 10, 0
msg_ipi:     db "self-ipi ok", 10, 0
msg_pit:     db "pit ok", 10, 0
msg_ok:      db "BAREMETAL-OK ", NAME, 10, 0
msg_fail:    db "BAREMETAL-FAIL ", NAME, ": ", 0
fail_magic:  db "not entered by a multiboot loader (EAX)", 0
fail_base:   db "the local APIC is not at 0xfee00000", 0
fail_timer:  db "no APIC timer interrupts", 0
fail_ipi:    db "the self-IPI did not arrive", 0
fail_icr:    db "the ICR stays busy", 0
fail_pit:    db "no PIT interrupts through the 8259", 0
fail_unexpected: db "unexpected interrupt 0x"
hex_slot:    db "??", 0

    align 16
file_end:

; Zeroed by the loader (bss_end_addr).
absolute file_end
    alignb 4096
idt:        resb 256 * 8
    alignb 16
stack:      resb 16384
stack_top:
bss_end:
