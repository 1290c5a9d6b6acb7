; tests/baremetal/linux64_smoke.asm — a tiny "kernel" in the Linux boot
; protocol's bzImage format (protocol 2.12, XLF_KERNEL_64) for the machine
; tests: it checks the local APIC (timer, self-IPI) and the PIT through the
; 8259 and powers off through isa-debug-exit.
;
; Two ways in, as with a real bzImage:
;  - a loader that takes the 64-bit entry (emud -kernel) loads the
;    protected-mode part at 1 MiB and enters it at offset 0x200 in long mode
;    (identity-mapped, RSI = boot_params);
;  - a loader that runs the real-mode setup (QEMU's -kernel, through its
;    option ROM) starts at offset 0x200 of the setup: it switches to 32-bit
;    protected mode and jumps to code32_start (offset 0 of the protected-mode
;    part), which builds page tables and enters long mode at offset 0x200.
;
; Output on COM1 (0x3f8):
;   BAREMETAL-START linux64_smoke
;   lapic-timer ok / self-ipi ok / pit ok
;   BAREMETAL-OK linux64_smoke
; then 0x10 to port 0xf4 (isa-debug-exit: QEMU exits with (0x10 << 1) | 1 =
; 33). A failed check prints "BAREMETAL-FAIL linux64_smoke: <what>" and
; writes 0x01 (exit status 3).

%define NAME "linux64_smoke"

SETUP_SECTS     equ 1
SETUP_SIZE      equ (SETUP_SECTS + 1) * 512
LOAD_ADDR       equ 0x100000
; Memory the kernel uses beyond its file (inside init_size): page tables for
; the 32-bit path, the IDT, the stack.
PAGE_TABLES     equ LOAD_ADDR + 0x10000     ; PML4, PDPT, 4 PDs
IDT             equ LOAD_ADDR + 0x16000     ; 256 16-byte gates
STACK_TOP       equ LOAD_ADDR + 0x1b000
INIT_SIZE       equ STACK_TOP - LOAD_ADDR

LAPIC           equ 0xfee00000
COM1            equ 0x3f8
EXIT_PORT       equ 0xf4
VEC_PIT         equ 0x20                    ; IRQ0 after remapping the 8259 to 0x20
VEC_TIMER       equ 0x40
VEC_IPI         equ 0x41
VEC_SPURIOUS    equ 0xff
TIMEOUT_TSC     equ 1 << 34                 ; ~6 s at 2.6 GHz: a check that waits longer fails

; --- real-mode setup: boot sector and setup header ------------------------------
section setup start=0 vstart=0
bits 16
    times 0x1f1 - ($ - $$) db 0
    db SETUP_SECTS                          ; 0x1f1 setup_sects
    dw 0                                    ; 0x1f2 root_flags
    dd (kernel_file_end - kernel_start + 15) / 16 ; 0x1f4 syssize
    dw 0                                    ; 0x1f8 ram_size
    dw 0xffff                               ; 0x1fa vid_mode: normal
    dw 0                                    ; 0x1fc root_dev
    dw 0xaa55                               ; 0x1fe boot_flag
    jmp short setup_code                    ; 0x200 jump (its target ends the header)
    db "HdrS"                               ; 0x202 header
    dw 0x020c                               ; 0x206 version 2.12
    dd 0                                    ; 0x208 realmode_swtch
    dw 0x1000                               ; 0x20c start_sys_seg
    dw version_string - 0x200               ; 0x20e kernel_version
    db 0                                    ; 0x210 type_of_loader
    db 0x01                                 ; 0x211 loadflags: LOADED_HIGH
    dw 0                                    ; 0x212 setup_move_size
    dd LOAD_ADDR                            ; 0x214 code32_start
    dd 0                                    ; 0x218 ramdisk_image
    dd 0                                    ; 0x21c ramdisk_size
    dd 0                                    ; 0x220 bootsect_kludge
    dw 0                                    ; 0x224 heap_end_ptr
    db 0                                    ; 0x226 ext_loader_ver
    db 0                                    ; 0x227 ext_loader_type
    dd 0                                    ; 0x228 cmd_line_ptr
    dd 0x7fffffff                           ; 0x22c initrd_addr_max
    dd 0x200000                             ; 0x230 kernel_alignment
    db 0                                    ; 0x234 relocatable_kernel: load at 1 MiB
    db 0                                    ; 0x235 min_alignment
    dw 0x0001                               ; 0x236 xloadflags: XLF_KERNEL_64
    dd 255                                  ; 0x238 cmdline_size
    dd 0                                    ; 0x23c hardware_subarch
    dq 0                                    ; 0x240 hardware_subarch_data
    dd 0                                    ; 0x248 payload_offset
    dd 0                                    ; 0x24c payload_length
    dq 0                                    ; 0x250 setup_data
    dq LOAD_ADDR                            ; 0x258 pref_address
    dd INIT_SIZE                            ; 0x260 init_size
    dd 0                                    ; 0x264 handover_offset
setup_code:
    ; CS = the setup's segment + 0x20 (CS:0 is offset 0x200 of the file).
    cli
    mov ax, cs
    sub ax, 0x20
    mov ds, ax
    movzx ebx, ax
    shl ebx, 4                              ; linear address of the setup (the zero page)
    lea eax, [ebx + gdt32]
    mov [gdt32_desc + 2], eax
    lea eax, [ebx + setup_pm32]
    mov [pm32_target], eax
    o32 lgdt [gdt32_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    o32 jmp far [pm32_target]

bits 32
setup_pm32:
    mov ax, 0x18
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov esi, ebx                            ; boot_params
    jmp [ebx + 0x214]                       ; code32_start

align 4
pm32_target:
    dd 0
    dw 0x10
align 8
gdt32:
    dq 0
    dq 0
    dq 0x00cf9a000000ffff                   ; 0x10: flat 32-bit code (the protocol's __BOOT_CS)
    dq 0x00cf92000000ffff                   ; 0x18: flat data (__BOOT_DS)
gdt32_end:
gdt32_desc:
    dw gdt32_end - gdt32 - 1
    dd 0                                    ; patched: linear address of gdt32
version_string:
    db "linux64_smoke (emud bare-metal test)", 0
    times SETUP_SIZE - ($ - $$) db 0

; --- protected-mode part, loaded at 1 MiB ----------------------------------------
section kernel start=SETUP_SIZE vstart=LOAD_ADDR
kernel_start:
bits 32
startup_32:
    ; Identity-map 4 GiB with 2 MiB pages and enter long mode.
    cli
    mov edi, PAGE_TABLES
    mov ecx, 6 * 4096 / 4
    xor eax, eax
    cld
    rep stosd
    mov dword [PAGE_TABLES], PAGE_TABLES + 0x1000 + 3
    mov edi, PAGE_TABLES + 0x1000
    mov eax, PAGE_TABLES + 0x2000 + 3
    mov ecx, 4
.pdpt:
    mov [edi], eax
    add edi, 8
    add eax, 0x1000
    loop .pdpt
    mov edi, PAGE_TABLES + 0x2000
    mov eax, 0x83                           ; present, writable, 2 MiB
    mov ecx, 4 * 512
.pd:
    mov [edi], eax
    add edi, 8
    add eax, 0x200000
    loop .pd
    mov eax, cr4
    or eax, 1 << 5                          ; PAE
    mov cr4, eax
    mov eax, PAGE_TABLES
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1 << 8                          ; EFER.LME
    wrmsr
    lgdt [gdt64_desc]
    mov eax, cr0
    or eax, 0x80000001                      ; PG, PE
    mov cr0, eax
    jmp 0x08:startup_64

    times 0x200 - ($ - $$) db 0
bits 64
startup_64:
    ; The 64-bit entry (boot protocol: offset 0x200 of the protected-mode part).
    cli
    lgdt [gdt64_desc]
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov rsp, STACK_TOP
    push 0x08
    lea rax, [rel .cs_loaded]
    push rax
    retfq
.cs_loaded:
    jmp main

; --- the checks --------------------------------------------------------------------
main:
    call serial_init
    lea rsi, [rel msg_start]
    call puts
    call pic_init
    call idt_init

    ; Local APIC: enabled in IA32_APIC_BASE and by the SVR; LINT0 = ExtINT
    ; (the 8259's INTR), LINT1 = NMI.
    mov ecx, 0x1b
    rdmsr
    and eax, 0xfffff000
    cmp eax, LAPIC
    lea rsi, [rel fail_base]
    jne fail
    rdmsr
    or eax, 1 << 11
    wrmsr
    mov ebx, LAPIC
    mov dword [rbx + 0xf0], 0x100 | VEC_SPURIOUS
    mov dword [rbx + 0x80], 0               ; TPR
    mov dword [rbx + 0x350], 0x700          ; LINT0: ExtINT
    mov dword [rbx + 0x360], 0x400          ; LINT1: NMI

    ; The APIC timer, periodic: three interrupts.
    mov dword [rbx + 0x3e0], 0x3            ; divide by 16
    mov dword [rbx + 0x320], (1 << 17) | VEC_TIMER
    mov dword [rbx + 0x380], 100000
    sti
    lea rdi, [rel timer_ticks]
    mov eax, 3
    lea rsi, [rel fail_timer]
    call wait_count
    mov dword [rbx + 0x320], (1 << 16) | VEC_TIMER ; masked
    mov dword [rbx + 0x380], 0
    lea rsi, [rel msg_timer]
    call puts

    ; A fixed IPI to ourselves by APIC ID through the ICR.
    mov eax, [rbx + 0x20]
    and eax, 0xff000000
    mov [rbx + 0x310], eax
    mov dword [rbx + 0x300], (1 << 14) | VEC_IPI ; fixed, physical, assert
    lea rdi, [rel ipi_count]
    mov eax, 1
    lea rsi, [rel fail_ipi]
    call wait_count
    test dword [rbx + 0x300], 1 << 12       ; delivery status: idle again
    lea rsi, [rel fail_icr]
    jnz fail
    lea rsi, [rel msg_ipi]
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
    lea rdi, [rel pit_ticks]
    mov eax, 3
    lea rsi, [rel fail_pit]
    call wait_count
    mov al, 0xff
    out 0x21, al
    cli
    lea rsi, [rel msg_pit]
    call puts

    lea rsi, [rel msg_ok]
    call puts
    mov eax, 0x10
    jmp power_off

; rsi: the failed check. Prints it and exits with status 3.
fail:
    cli
    push rsi
    lea rsi, [rel msg_fail]
    call puts
    pop rsi
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

; Waits until the dword at rdi reaches eax; fails with rsi on timeout.
wait_count:
    push rcx
    push rdx
    mov ecx, eax
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r8, rax
    mov r9, TIMEOUT_TSC
    add r8, r9
.loop:
    cmp [rdi], ecx
    jae .done
    pause
    rdtsc
    shl rdx, 32
    or rax, rdx
    cmp rax, r8
    jb .loop
    jmp fail
.done:
    pop rdx
    pop rcx
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
    push rcx
    push rdx
    push rax
    mov ecx, 1000000
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20                           ; THR empty
    jnz .send
    pause
    loop .wait
.send:
    pop rax
    mov dx, COM1
    out dx, al
    pop rdx
    pop rcx
    ret

; rsi: a NUL-terminated string.
puts:
    push rax
.next:
    lodsb
    test al, al
    jz .end
    call putc
    jmp .next
.end:
    pop rax
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
    mov rdi, IDT
    lea rdx, [rel stubs]
    xor ecx, ecx
.gate:
    mov rax, rdx
    call set_gate
    add rdx, 16
    inc ecx
    cmp ecx, 256
    jb .gate
    lea rax, [rel isr_timer]
    mov ecx, VEC_TIMER
    call set_gate
    lea rax, [rel isr_ipi]
    mov ecx, VEC_IPI
    call set_gate
    lea rax, [rel isr_pit]
    mov ecx, VEC_PIT
    call set_gate
    lea rax, [rel isr_ignore]
    mov ecx, VEC_SPURIOUS
    call set_gate
    mov ecx, 0x27                           ; the 8259s' spurious IRQ7 and IRQ15
    call set_gate
    mov ecx, 0x2f
    call set_gate
    lidt [rel idt_desc]
    ret

; rax: handler, ecx: vector. A 64-bit interrupt gate, DPL 0.
set_gate:
    push rdi
    push rbx
    mov rdi, rcx
    shl rdi, 4
    add rdi, IDT
    mov rbx, rax
    mov [rdi], bx                           ; offset 15:0
    mov word [rdi + 2], 0x08
    mov word [rdi + 4], 0x8e00              ; present, interrupt gate
    shr rbx, 16
    mov [rdi + 6], bx                       ; offset 31:16
    shr rbx, 16
    mov [rdi + 8], ebx                      ; offset 63:32
    mov dword [rdi + 12], 0
    pop rbx
    pop rdi
    ret

isr_timer:
    push rax
    lock inc dword [rel timer_ticks]
    mov eax, LAPIC + 0xb0
    mov dword [rax], 0                      ; EOI
    pop rax
    iretq

isr_ipi:
    push rax
    lock inc dword [rel ipi_count]
    mov eax, LAPIC + 0xb0
    mov dword [rax], 0
    pop rax
    iretq

isr_pit:
    push rax
    lock inc dword [rel pit_ticks]
    mov al, 0x20
    out 0x20, al                            ; EOI to the master 8259
    pop rax
    iretq

isr_ignore:
    iretq

; Vector N enters at stubs + 16 * N with N on the stack.
align 16
stubs:
%assign v 0
%rep 256
    align 16
    push qword v
    jmp unexpected
%assign v v + 1
%endrep

unexpected:
    pop rbx
    lea rsi, [rel fail_unexpected]
    mov rdi, hex_slot
    mov al, bl
    shr al, 4
    call hex_digit
    mov [rdi], al
    mov al, bl
    and al, 0xf
    call hex_digit
    mov [rdi + 1], al
    jmp fail

hex_digit:
    add al, '0'
    cmp al, '9'
    jbe .ok
    add al, 'a' - '9' - 1
.ok:
    ret

align 8
gdt64:
    dq 0
    dq 0x00af9a000000ffff                   ; 0x08: 64-bit code
    dq 0x00cf92000000ffff                   ; 0x10: data
gdt64_end:
gdt64_desc:
    dw gdt64_end - gdt64 - 1
    dq gdt64
idt_desc:
    dw 256 * 16 - 1
    dq IDT

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
fail_base:   db "the local APIC is not at 0xfee00000", 0
fail_timer:  db "no APIC timer interrupts", 0
fail_ipi:    db "the self-IPI did not arrive", 0
fail_icr:    db "the ICR stays busy", 0
fail_pit:    db "no PIT interrupts through the 8259", 0
fail_unexpected: db "unexpected interrupt 0x"
hex_slot:    db "??", 0

    align 16
kernel_file_end:
    ; (An error "TIMES value is negative" here: the kernel grew into its page tables.)
    times -((kernel_file_end - kernel_start) > (PAGE_TABLES - LOAD_ADDR)) db 0
