; tests/baremetal/prot32.asm — 32-bit protected mode: paging (4 KiB and
; 4 MiB PSE pages, then PAE with NX), CR0.WP, user/supervisor protection
; from ring 3, and a virtual-8086 excursion.
;
; Progress on port 0xe9, result on port 0xf4 (0 = success, else the check):
;   G paging on        W write to a read-only page faults once CR0.WP is set
;   U ring 3 reading a supervisor page faults with U=1
;   V int 0x80 from virtual-8086 mode reaches the 32-bit handler
;   C a call gate from ring 3 to ring 0 copies a parameter; retf 4 returns
;   N executing an NX page faults with I/D=1 under PAE

bits 16
org 0x7c00

start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
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
    lidt [idt_desc]
    mov ax, 0x28
    ltr ax

    ; Page directory at 0x10000: PDE0 -> page table at 0x11000 (first 4 MiB,
    ; user + writable 4 KiB pages), PDE1: a 4 MiB supervisor page at 4 MiB,
    ; PDE2: a 4 MiB read-only supervisor page at 8 MiB.
    mov edi, 0x10000
    mov ecx, 2048
    xor eax, eax
    rep stosd
    mov dword [0x10000], 0x11007
    mov dword [0x10004], 0x400083
    mov dword [0x10008], 0x800081
    mov edi, 0x11000
    mov eax, 7
    mov ecx, 1024
.pt:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    loop .pt
    mov eax, cr4
    or eax, 1 << 4          ; PSE
    mov cr4, eax
    mov eax, 0x10000
    mov cr3, eax
    mov eax, cr0
    or eax, 1 << 31
    mov cr0, eax
    mov al, 'G'
    out 0xe9, al

    ; Supervisor writes ignore R/W while CR0.WP is clear...
    mov dword [0x800000], 0x1234
    cmp dword [0x800000], 0x1234
    jne fail_1
    ; ...and fault once it is set.
    mov eax, cr0
    or eax, 1 << 16
    mov cr0, eax
    mov dword [expect_err], 3  ; present | write
    mov dword [expect_cr2], 0x800004
    mov dword [0x800004], 1 ; 10 bytes: the handler skips them
    cmp dword [faults], 1
    jne fail_2
    mov al, 'W'
    out 0xe9, al

    ; Ring 3 (user code and stack in the user 4 MiB) reads a supervisor page.
    mov dword [expect_err], 5  ; present | user
    mov dword [expect_cr2], 0x400000
    mov dword [resume], after_user
    push 0x23               ; SS (user data)
    push 0x80000            ; ESP
    push 0x202              ; EFLAGS
    push 0x1b               ; CS (user code)
    push user_code
    iretd
after_user:
    mov esp, 0x90000
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    cmp dword [faults], 2
    jne fail_3
    mov al, 'U'
    out 0xe9, al

    ; Virtual-8086 mode: 16-bit code at 0000:7e00 raises int 0x80 (IOPL 3).
    mov dword [resume], after_v86
    push 0                  ; GS
    push 0                  ; FS
    push 0x40               ; DS (real-mode paragraphs)
    push 0x40               ; ES
    push 0                  ; SS
    push 0x7000             ; SP
    push 0x23202            ; EFLAGS: VM, IOPL 3, IF
    push 0                  ; CS
    push v86_code
    iretd
after_v86:
    mov esp, 0x90000
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    cmp dword [v86_seen], 1
    jne fail_4
    mov al, 'V'
    out 0xe9, al

    ; A call gate (GDT 0x30, DPL 3, one parameter) from ring 3 into ring 0.
    push 0x23
    push 0x80000
    push 0x202
    push 0x1b
    push user_gate
    iretd
after_gate:
    mov esp, 0x90000
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov al, 'C'
    out 0xe9, al

    ; PAE with NX: 2 MiB pages, the one at 2 MiB not executable.
    mov eax, cr0
    and eax, ~(1 << 31)
    mov cr0, eax
    mov edi, 0x12000
    mov ecx, 2048
    xor eax, eax
    rep stosd
    mov dword [0x12000], 0x13001  ; PDPTE0 -> page directory
    mov dword [0x13000], 0x000083 ; 0-2 MiB
    mov dword [0x13008], 0x200083 ; 2-4 MiB, NX below
    mov dword [0x1300c], 0x80000000
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1 << 11               ; NXE
    wrmsr
    mov eax, cr4
    or eax, 1 << 5                ; PAE
    mov cr4, eax
    mov eax, 0x12000
    mov cr3, eax
    mov eax, cr0
    or eax, 1 << 31
    mov cr0, eax
    mov dword [expect_err], 0x11  ; present | instruction fetch
    mov dword [expect_cr2], 0x200000
    mov dword [resume], after_nx
    mov byte [0x200000], 0xc3     ; ret, never executed
    mov eax, 0x200000
    call eax
after_nx:
    mov esp, 0x90000
    cmp dword [faults], 3
    jne fail_5
    mov al, 'N'
    out 0xe9, al
    mov al, 0
    out 0xf4, al
    hlt

fail_1:
    mov al, 1
    jmp fail
fail_2:
    mov al, 2
    jmp fail
fail_3:
    mov al, 3
    jmp fail
fail_4:
    mov al, 4
    jmp fail
fail_5:
    mov al, 5
fail:
    out 0xf4, al
    hlt

user_code:
    mov ax, 0x23            ; iret to ring 3 nulled DS: load the user one
    mov ds, ax
    mov eax, [0x400000]     ; #PF: supervisor page
    jmp $

user_gate:
    push 0x77
    call 0x30:0             ; the gate supplies the offset
    cmp esp, 0x80000        ; retf 4 released the parameter
    jne .bad
    push 0x88
    call 0x30:0             ; the second call finishes in ring 0
.bad:
    push 0x99
    call 0x30:0

; Ring 0 through the gate: [esp] EIP, CS, the parameter, old ESP, old SS.
gate_handler:
    mov ax, cs
    test ax, 3
    jnz .bad
    cmp dword [esp + 16], 0x23
    jne .bad
    cmp dword [esp + 4], 0x1b
    jne .bad
    mov eax, [esp + 8]
    cmp eax, 0x77
    je .first
    cmp eax, 0x88
    je after_gate
.bad:
    mov al, 9
    out 0xf4, al
    hlt
.first:
    retf 4

bits 16
v86_code:
    int 0x80
    jmp $

bits 32
; #PF: check the error code and CR2; resume where asked, or skip the
; faulting 10-byte "mov dword [abs], imm32" when resume is zero.
pf_handler:
    push eax
    mov eax, [esp + 4]      ; error code
    cmp eax, [expect_err]
    jne .bad
    mov eax, cr2
    cmp eax, [expect_cr2]
    jne .bad
    inc dword [faults]
    mov eax, [resume]
    test eax, eax
    jnz .jump
    pop eax
    add esp, 4
    add dword [esp], 10
    iretd
.jump:
    jmp eax
.bad:
    mov al, 6
    out 0xf4, al
    hlt

; int 0x80 from v8086 mode: the frame holds the v8086 segments, DS is null now.
int80_handler:
    mov ax, ds
    test ax, ax
    jnz .bad
    mov ax, 0x10
    mov ds, ax
    test dword [esp + 8], 1 << 17   ; the saved EFLAGS has VM
    jz .bad
    cmp dword [esp + 24], 0x40      ; saved ES
    jne .bad
    mov dword [v86_seen], 1
    jmp after_v86
.bad:
    mov al, 7
    out 0xf4, al
    hlt

gp_handler:
    mov al, 8
    out 0xf4, al
    hlt

align 4
faults:     dd 0
expect_err: dd 0
expect_cr2: dd 0
resume:     dd 0
v86_seen:   dd 0

align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff   ; 0x08 code ring 0
    dq 0x00cf92000000ffff   ; 0x10 data ring 0
    dq 0x00cffa000000ffff   ; 0x18 code ring 3
    dq 0x00cff2000000ffff   ; 0x20 data ring 3
    dw 0x67                 ; 0x28 32-bit TSS
    dw tss
    db 0, 0x89, 0, 0
    dw gate_handler         ; 0x30 32-bit call gate, DPL 3, one parameter
    dw 0x08
    db 1, 0xec
    dw 0
gdt_end:
gdt_desc:
    dw gdt_end - gdt - 1
    dd gdt

align 8
idt:
    times 13 dq 0
    dw gp_handler, 0x08, 0x8e00, 0      ; 13
    dw pf_handler, 0x08, 0x8e00, 0      ; 14
    times (0x80 - 15) dq 0
    dw int80_handler, 0x08, 0xee00, 0   ; 0x80, DPL 3
idt_end:
idt_desc:
    dw idt_end - idt - 1
    dd idt

align 4
tss:
    dd 0
    dd 0x90000              ; ESP0
    dd 0x10                 ; SS0
    times 22 dd 0
    dw 0, 0x68              ; no I/O permission bitmap
