; tests/baremetal/testdev_smoke.asm — a multiboot (v1) kernel that checks the
; small test devices QEMU users script against, in 32-bit protected mode with
; paging off:
;   - isa-debugcon: "DEBUGCON-OK" written byte by byte to port 0xe9, and a
;     read of the port returns the readback byte (0xe9);
;   - pc-testdev: the register at 0xe0 read back at every width and byte
;     offset, and through the byte-wise window at 0xe8; the 64 KiB scratch
;     MMIO at 0xff000000 keeps what is written there.
; Output on COM1: BAREMETAL-START testdev_smoke, then BAREMETAL-OK
; testdev_smoke and 0x10 to isa-debug-exit at 0xf4 (status 33); a failed
; check prints "BAREMETAL-FAIL testdev_smoke: <what>" and writes 0x01.

LOAD_ADDR       equ 0x100000
MB_MAGIC        equ 0x1badb002
MB_FLAGS        equ (1 << 16) | (1 << 1) | (1 << 0)
COM1            equ 0x3f8
EXIT_PORT       equ 0xf4
DEBUGCON        equ 0xe9
TESTDEV         equ 0xe0
TESTDEV_BYTES   equ 0xe8
TESTDEV_MMIO    equ 0xff000000

bits 32
org LOAD_ADDR

multiboot_header:
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)
    dd multiboot_header
    dd LOAD_ADDR
    dd file_end
    dd bss_end
    dd start

start:
    cli
    mov esp, stack_top
    mov esi, msg_start
    call puts

    ; isa-debugcon: the message, byte by byte; a read gives the readback byte.
    mov esi, msg_debugcon
.con:
    lodsb
    test al, al
    jz .con_done
    out DEBUGCON, al
    jmp .con
.con_done:
    in al, DEBUGCON
    cmp al, 0xe9
    mov esi, fail_readback
    jne fail

    ; pc-testdev register: a dword, then narrower accesses at each offset.
    mov eax, 0x12345678
    out TESTDEV, eax
    in eax, TESTDEV
    cmp eax, 0x12345678
    mov esi, fail_dword
    jne fail
    mov dx, TESTDEV + 2
    mov al, 0xab
    out dx, al                              ; byte 2
    in eax, TESTDEV
    cmp eax, 0x12ab5678
    mov esi, fail_byte
    jne fail
    mov dx, TESTDEV + 2
    in ax, dx                               ; bytes 2-3
    cmp ax, 0x12ab
    mov esi, fail_word
    jne fail
    ; The byte-wise window sees the same register (byte 1, port 0xe9, is
    ; isa-debugcon's: it shadows the window there).
    in al, TESTDEV_BYTES
    cmp al, 0x78
    mov esi, fail_window
    jne fail
    mov al, 0x99
    out TESTDEV_BYTES + 3, al
    in eax, TESTDEV
    cmp eax, 0x99ab5678
    mov esi, fail_window
    jne fail

    ; Scratch MMIO: a pattern at both ends of the 64 KiB.
    mov dword [TESTDEV_MMIO], 0x5a5aa5a5
    mov dword [TESTDEV_MMIO + 0xfffc], 0x01020304
    mov byte [TESTDEV_MMIO + 1], 0x11
    cmp dword [TESTDEV_MMIO], 0x5a5a11a5
    mov esi, fail_mmio
    jne fail
    cmp dword [TESTDEV_MMIO + 0xfffc], 0x01020304
    mov esi, fail_mmio
    jne fail

    mov esi, msg_ok
    call puts
    mov al, 0x10
    out EXIT_PORT, al
.hang:
    hlt
    jmp .hang

fail:
    push esi
    mov esi, msg_fail
    call puts
    pop esi
    call puts
    mov esi, msg_nl
    call puts
    mov al, 0x01
    out EXIT_PORT, al
    jmp start.hang

; puts: the NUL-terminated string at ESI on COM1 (polling the LSR).
puts:
    push eax
    push edx
.next:
    lodsb
    test al, al
    jz .done
    mov ah, al
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    mov dx, COM1
    mov al, ah
    out dx, al
    jmp .next
.done:
    pop edx
    pop eax
    ret

msg_start:      db "BAREMETAL-START testdev_smoke", 13, 10, 0
msg_ok:         db "BAREMETAL-OK testdev_smoke", 13, 10, 0
msg_fail:       db "BAREMETAL-FAIL testdev_smoke: ", 0
msg_nl:         db 13, 10, 0
msg_debugcon:   db "DEBUGCON-OK", 10, 0
fail_readback:  db "debugcon readback", 0
fail_dword:     db "testdev dword", 0
fail_byte:      db "testdev byte write", 0
fail_word:      db "testdev word read at offset 2", 0
fail_window:    db "testdev byte window", 0
fail_mmio:      db "testdev mmio", 0

file_end:
align 16
stack:          resb 4096
stack_top:
bss_end:
