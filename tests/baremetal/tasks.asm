; tests/baremetal/tasks.asm — hardware task switching (32-bit TSSs).
;
;   B  call to TSS B runs task B, whose iret (NT set) returns to task A
;   b  a second call resumes task B after its iret
;   D  #DE through a task gate runs handler task C; C moves A's saved EIP past
;      the div and returns with iret
; Result on port 0xf4: 0 = success.

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
    mov ax, 0x18            ; task A is the one running now
    ltr ax
    call 0x20:0             ; task B
    pushfd
    test dword [esp], 1 << 14
    jnz fail_1              ; NT belongs to B, not to A
    add esp, 4
    call 0x20:0             ; B again: it resumes after its iret
    xor edx, edx
    mov eax, 1
    xor ecx, ecx
    div ecx                 ; #DE -> task gate -> task C
    cmp dword [c_ran], 1
    jne fail_2
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

task_b:
    pushfd
    test dword [esp], 1 << 14   ; called: NT is set
    jz .bad
    add esp, 4
    mov al, 'B'
    out 0xe9, al
    iretd                   ; back to A through the back link
    mov al, 'b'
    out 0xe9, al
    iretd
.bad:
    mov al, 3
    out 0xf4, al
    hlt

task_c:
    mov al, 'D'
    out 0xe9, al
    movzx eax, word [tss_c]     ; the back link names A
    cmp eax, 0x18
    jne .bad
    add dword [tss_a + 0x20], 2 ; A resumes after "div ecx"
    mov dword [c_ran], 1
    iretd
.bad:
    mov al, 4
    out 0xf4, al
    hlt

align 4
c_ran: dd 0

align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff   ; 0x08 code
    dq 0x00cf92000000ffff   ; 0x10 data
    dw 0x67, tss_a          ; 0x18 TSS A
    db 0, 0x89, 0, 0
    dw 0x67, tss_b          ; 0x20 TSS B
    db 0, 0x89, 0, 0
    dw 0x67, tss_c          ; 0x28 TSS C
    db 0, 0x89, 0, 0
gdt_end:
gdt_desc:
    dw gdt_end - gdt - 1
    dd gdt

align 8
idt:
    dw 0, 0x28, 0x8500, 0   ; vector 0: a task gate to TSS C
idt_end:
idt_desc:
    dw idt_end - idt - 1
    dd idt

; A 32-bit TSS: link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags,
; eax..edi, es cs ss ds fs gs, ldt, trap/iomap.
%macro TSS 3                ; eip, esp, eflags
    dd 0, 0, 0, 0, 0, 0, 0, 0
    dd %1, %3
    dd 0, 0, 0, 0, %2, 0, 0, 0
    dd 0x10, 0x08, 0x10, 0x10, 0x10, 0x10
    dd 0
    dw 0, 0x68
%endmacro

align 16
tss_a: TSS 0, 0, 2
tss_b: TSS task_b, 0x80000, 2
tss_c: TSS task_c, 0x70000, 2
