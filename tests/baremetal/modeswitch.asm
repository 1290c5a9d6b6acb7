; tests/baremetal/modeswitch.asm — a bare-metal walk through the x86 modes.
;
; Loaded at 0x7c00 and entered in real mode. Reports progress on the debug
; console (port 0xe9) and its result on port 0xf4 (0 = success):
;   R  real mode           P  protected mode      D  #DE handled by a 32-bit gate
;   L  long mode           I  int3 via a 64-bit gate
;   F  #PF handled (CR2 and error code checked)
;   U  ring 3 reached by sysret                   S  back in ring 0 by syscall
; A failed check writes its number to port 0xf4 and halts.

bits 16
org 0x7c00

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov al, 'R'
    out 0xe9, al
    lgdt [gdt_desc]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp 0x08:pm32

bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x90000
    mov al, 'P'
    out 0xe9, al
    lidt [idt32_desc]
    xor edx, edx
    mov eax, 1
    xor ecx, ecx
    div ecx                 ; #DE: the handler skips these two bytes
    mov al, 'D'
    out 0xe9, al

    ; Page tables at 0x1000: the first GiB identity-mapped with 2 MiB pages.
    mov edi, 0x1000
    mov ecx, 3 * 1024
    xor eax, eax
    rep stosd
    mov dword [0x1000], 0x2007
    mov dword [0x2000], 0x3007
    mov edi, 0x3000
    mov eax, 0x87           ; present, writable, user, 2 MiB
    mov ecx, 512
.pd:
    mov [edi], eax
    mov dword [edi + 4], 0
    add eax, 0x200000
    add edi, 8
    loop .pd
    mov eax, cr4
    or eax, 1 << 5          ; PAE
    mov cr4, eax
    mov eax, 0x1000
    mov cr3, eax
    mov ecx, 0xc0000080     ; EFER: long mode, syscall
    rdmsr
    or eax, (1 << 8) | (1 << 0)
    wrmsr
    mov eax, cr0
    or eax, 1 << 31         ; paging: long mode becomes active
    mov cr0, eax
    jmp 0x18:lm64

de32:                       ; #DE in protected mode: step over "div ecx"
    add dword [esp], 2
    iretd

bits 64
lm64:
    mov ax, 0x20
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, 0x80000
    mov al, 'L'
    out 0xe9, al
    lidt [idt64_desc]
    mov ax, 0x40
    ltr ax
    int3
    ; A page fault just past the mapped GiB; the handler checks CR2.
    mov rbx, 0x40000010
    mov eax, [rbx]          ; 2 bytes: the handler steps over them
    ; Down to ring 3 with sysret, back with syscall.
    mov ecx, 0xc0000081     ; STAR: syscall CS 0x18, sysret base 0x28
    mov eax, 0
    mov edx, (0x28 << 16) | 0x18
    wrmsr
    mov ecx, 0xc0000082     ; LSTAR
    mov rax, syscall_entry
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov ecx, 0xc0000084     ; SFMASK: clear IF
    mov eax, 0x200
    xor edx, edx
    wrmsr
    mov rcx, user_code
    mov r11, 0x3002         ; IOPL 3: ring 3 may use the debug port
    mov rsp, 0x70000        ; the user stack
    o64 sysret

user_code:
    mov al, 'U'
    out 0xe9, al
    mov ax, cs
    cmp ax, 0x3b            ; user code64 | RPL 3
    jne fail_1
    syscall

syscall_entry:
    mov al, 'S'
    out 0xe9, al
    mov ax, cs
    cmp ax, 0x18
    jne fail_2
    cmp rcx, syscall_entry  ; RCX: the instruction after syscall
    jne fail_3
    mov al, 0
    out 0xf4, al
    hlt

fail_1:
    mov al, 1
    out 0xf4, al
    hlt
fail_2:
    mov al, 2
    out 0xf4, al
    hlt
fail_3:
    mov al, 3
    out 0xf4, al
    hlt

bp64:                       ; int3: a trap, returns after the instruction
    mov al, 'I'
    out 0xe9, al
    iretq

pf64:
    mov rax, cr2
    cmp rax, 0x40000010
    jne .bad
    cmp qword [rsp], 0      ; error code: read of a not-present page, ring 0
    jne .bad
    mov al, 'F'
    out 0xe9, al
    add rsp, 8
    add qword [rsp], 2
    iretq
.bad:
    mov al, 4
    out 0xf4, al
    hlt

align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff   ; 0x08 code32
    dq 0x00cf92000000ffff   ; 0x10 data
    dq 0x00209a0000000000   ; 0x18 code64 ring 0
    dq 0x00cf92000000ffff   ; 0x20 data ring 0
    dq 0x00cffa000000ffff   ; 0x28 code32 ring 3 (sysret base)
    dq 0x00cff2000000ffff   ; 0x30 data ring 3
    dq 0x0020fa0000000000   ; 0x38 code64 ring 3
    dw tss_end - tss - 1    ; 0x40 TSS (64-bit: 16 bytes)
    dw tss
    db 0, 0x89, 0, 0
    dq 0
gdt_end:
gdt_desc:
    dw gdt_end - gdt - 1
    dd gdt

idt32:
    dw de32, 0x08, 0x8e00, 0
idt32_desc:
    dw idt32_desc - idt32 - 1
    dd idt32

align 16
idt64:
    times 3 dq 0, 0
    dw bp64, 0x18, 0x8e00, 0, 0, 0, 0, 0      ; vector 3
    times 10 dq 0, 0
    dw pf64, 0x18, 0x8e00, 0, 0, 0, 0, 0      ; vector 14
idt64_desc:
    dw idt64_desc - idt64 - 1
    dq idt64

align 8
tss:
    dd 0
    dq 0x80000              ; RSP0
    times 92 db 0
tss_end:
