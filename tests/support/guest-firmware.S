# Firmware of vmwatch's test guests: a 64 KiB BIOS ROM that replaces SeaBIOS.
#
# Why: a guest with no OS ignores the ACPI power button, so `virsh shutdown`
# and `virsh reboot` do nothing and libvirt never emits the guest-initiated
# SHUTDOWN lifecycle event nor a REBOOT after an ACPI reboot. SeaBIOS plus a
# boot sector could do it, but SeaBIOS takes 5-11 s of CPU to boot under the
# nested KVM of the test machines; this firmware is up in milliseconds under
# KVM and TCG alike, and then sleeps in `hlt` (no CPU use).
#
# What it does, on every reset (so after each reboot too):
#   - points every interrupt vector at `iret`, and IRQ 9 (the ACPI SCI of the
#     PIIX4 power-management function) at `power_off`;
#   - software-enables the local APIC and sets LINT0 to ExtINT ("virtual
#     wire"), so the 8259 PIC's interrupts reach the CPU; the APIC lives at
#     0xfee00000, reached through a 4 GiB FS limit ("unreal mode");
#   - gives the PIIX4 PM registers I/O base 0x600 (PCI 00:01.3, PMBA and
#     PMIOSE) and enables the power-button event (PM1_EN bit 8);
#   - programs the PICs (vectors 0x08 and 0x70) with only IRQ2 (cascade) and
#     IRQ9 unmasked;
#   - writes `R` to COM1 ("ready: the power button now works"), then idles.
# On the power button (`virsh shutdown --mode acpi`, or `virsh reboot --mode
# acpi`, which libvirt turns into a fake reboot) it writes `S` to COM1 and
# enters S5 (PM1a_CNT = SLP_EN | SLP_TYP 0): QEMU treats it as a guest
# shutdown request.
#
# The bytes are in guest-firmware.hex, made into the ROM by
# tests/support/firmware.rs (for the end-to-end tests and the bench) and by
# tests/support/demo.sh; the test `firmware_hex_matches_its_source` checks
# that they match this file. To rebuild them:
#   as --32 -o fw.o guest-firmware.S && objcopy -O binary -j .text fw.o fw.bin
#   od -An -v -tx1 fw.bin | tr -d ' \n' > guest-firmware.hex
# The ROM is the code at offset 0, 0xff up to 0xfff0, and at 0xfff0 (the
# reset vector, F000:FFF0) `jmp far f000:0000`, padded to 65536 bytes.
.code16
.text
start:
  cli
  xor %ax,%ax
  mov %ax,%ds
  mov %ax,%ss
  mov $0x7000,%sp
  # Every interrupt vector -> iret; IRQ9 (vector 0x71) -> power_off.
  mov $0x100,%cx
  xor %bx,%bx
fill:
  movw $ignore,(%bx)
  movw $0xf000,2(%bx)
  add $4,%bx
  loop fill
  movw $power_off,0x1c4
  # Unreal mode: load FS with a flat 4 GiB data segment, back to real mode.
  # The descriptor's accessed bit is preset: the GDT is in ROM, and KVM
  # would retry the CPU's write of that bit forever.
  lgdtl %cs:gdt_desc
  mov %cr0,%eax
  or $1,%al
  mov %eax,%cr0
  mov $8,%bx
  mov %bx,%fs
  and $0xfe,%al
  mov %eax,%cr0
  xor %ax,%ax
  mov %ax,%fs
  # Local APIC: spurious vector register (software enable, vector 0xff),
  # then LVT LINT0 = ExtINT, unmasked.
  addr32 movl $0x1ff,%fs:0xfee000f0
  addr32 movl $0x700,%fs:0xfee00350
  # PIIX4 PM (PCI 00:01.3): PMBA (0x40) = 0x600, PMREGMISC (0x80) PMIOSE = 1.
  mov $0xcf8,%dx
  mov $0x80000b40,%eax
  out %eax,%dx
  mov $0xcfc,%dx
  mov $0x00000601,%eax
  out %eax,%dx
  mov $0xcf8,%dx
  mov $0x80000b80,%eax
  out %eax,%dx
  mov $0xcfc,%dx
  mov $1,%al
  out %al,%dx
  # 8259 PICs: ICW1..ICW4, then masks.
  mov $0x11,%al
  out %al,$0x20
  out %al,$0xa0
  mov $0x08,%al
  out %al,$0x21
  mov $0x70,%al
  out %al,$0xa1
  mov $0x04,%al
  out %al,$0x21
  mov $0x02,%al
  out %al,$0xa1
  mov $0x01,%al
  out %al,$0x21
  out %al,$0xa1
  mov $0xfb,%al
  out %al,$0x21
  mov $0xfd,%al
  out %al,$0xa1
  # PM1_EN: power button.
  mov $0x602,%dx
  mov $0x0100,%ax
  out %ax,%dx
  # COM1: 'R', ready.
  mov $0x3f8,%dx
  mov $0x52,%al
  out %al,%dx
idle:
  sti
  hlt
  jmp idle
ignore:
  iret
power_off:
  # COM1: 'S', shutting down.
  mov $0x3f8,%dx
  mov $0x53,%al
  out %al,%dx
  # PM1a_CNT: SLP_EN with SLP_TYP 0, QEMU's soft-off.
  mov $0x604,%dx
  mov $0x2000,%ax
  out %ax,%dx
halt:
  cli
  hlt
  jmp halt
.align 8
gdt:
  .quad 0
  .quad 0x00cf93000000ffff
gdt_desc:
  .word 15
  .long 0xf0000 + gdt
