//! A minimal eBPF instruction set: the instructions the cgroup device filter
//! needs, their encoding as the kernel's `struct bpf_insn`, and an
//! interpreter of them (pure) so generated programs are checked without root.
//!
//! eBPF is not the classic BPF of seccomp (`src/runtime/seccomp/bpf.rs`): eleven
//! 64-bit registers, 8-byte instructions with a signed 16-bit jump offset and
//! a 32-bit immediate, and a context pointer in r1 instead of an implicit
//! packet. Only what a straight-line, forward-jumping filter uses is here; the
//! interpreter refuses anything else (and backward jumps, reads of unset
//! registers, out-of-bounds context reads), roughly as the kernel's verifier
//! would, so a program it accepts is also one the verifier has no reason to
//! refuse.

/// One eBPF instruction (linux/bpf.h `struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

// Instruction classes.
const CLASS_LDX: u8 = 0x01;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
// Source operand: the immediate (K) or a register (X).
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
// Load mode and sizes.
const MODE_MEM: u8 = 0x60;
const SIZE_W: u8 = 0x00;
const SIZE_H: u8 = 0x08;
const SIZE_B: u8 = 0x10;
const SIZE_DW: u8 = 0x18;

/// ALU operations (the op bits of an ALU/ALU64 opcode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alu {
    Add = 0x00,
    Sub = 0x10,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Xor = 0xa0,
    Mov = 0xb0,
}

/// Jump conditions (the op bits of a JMP opcode), unsigned comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jmp {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Set = 0x40,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

const JMP_JA: u8 = 0x00;
const JMP_EXIT: u8 = 0x90;

/// r0 holds the return value, r1 the context on entry; r10 (the frame
/// pointer) is read-only and not used by our programs.
pub(crate) const R0: u8 = 0;
pub(crate) const R1: u8 = 1;
pub(crate) const R2: u8 = 2;
pub(crate) const R3: u8 = 3;
pub(crate) const R4: u8 = 4;
pub(crate) const R5: u8 = 5;
const REGISTERS: usize = 11;

impl Insn {
    /// `dst = *(u32 *)(src + off)`, zero-extended.
    pub(crate) fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        Insn {
            code: CLASS_LDX | MODE_MEM | SIZE_W,
            dst,
            src,
            off,
            imm: 0,
        }
    }

    /// 32-bit `dst op= imm` (the result's upper 32 bits are zero).
    pub(crate) fn alu32_imm(op: Alu, dst: u8, imm: i32) -> Insn {
        Insn {
            code: CLASS_ALU | SRC_K | op as u8,
            dst,
            src: 0,
            off: 0,
            imm,
        }
    }

    /// 32-bit `dst op= src`.
    pub(crate) fn alu32_reg(op: Alu, dst: u8, src: u8) -> Insn {
        Insn {
            code: CLASS_ALU | SRC_X | op as u8,
            dst,
            src,
            off: 0,
            imm: 0,
        }
    }

    /// `if dst <cond> imm goto +off` (imm sign-extended to 64 bits).
    pub(crate) fn jmp_imm(cond: Jmp, dst: u8, imm: i32, off: i16) -> Insn {
        Insn {
            code: CLASS_JMP | SRC_K | cond as u8,
            dst,
            src: 0,
            off,
            imm,
        }
    }

    /// `goto +off`.
    #[cfg(test)]
    pub(crate) fn ja(off: i16) -> Insn {
        Insn {
            code: CLASS_JMP | JMP_JA,
            dst: 0,
            src: 0,
            off,
            imm: 0,
        }
    }

    /// `return r0`.
    pub fn exit() -> Insn {
        Insn {
            code: CLASS_JMP | JMP_EXIT,
            dst: 0,
            src: 0,
            off: 0,
            imm: 0,
        }
    }

    /// The 8 bytes of `struct bpf_insn` (the register nibbles are bitfields:
    /// dst in the low one on little-endian machines, the only ones we build for).
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    /// The inverse of [`Insn::encode`].
    pub fn decode(b: [u8; 8]) -> Insn {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// The program as the bytes `bpf(BPF_PROG_LOAD)` takes.
pub fn encode(prog: &[Insn]) -> Vec<u8> {
    prog.iter().flat_map(|i| i.encode()).collect()
}

/// Checks the kernel verifier's structural rules that the interpreter cannot
/// see from one run: every instruction is reachable, jumps go forward and
/// stay inside, and the last instruction is an exit or a jump.
pub fn reachable(prog: &[Insn]) -> Result<(), String> {
    let mut seen = vec![false; prog.len()];
    let mut todo = vec![0usize];
    while let Some(pc) = todo.pop() {
        let Some(insn) = prog.get(pc) else {
            return Err(format!("control reaches {pc}, past the end"));
        };
        if std::mem::replace(&mut seen[pc], true) {
            continue;
        }
        let op = insn.code & 0xf0;
        if insn.code & 0x07 != CLASS_JMP {
            todo.push(pc + 1);
        } else if op != JMP_EXIT {
            if insn.off < 0 {
                return Err(format!("insn {pc}: backward jump"));
            }
            todo.push(pc + 1 + insn.off as usize);
            if op != JMP_JA {
                todo.push(pc + 1);
            }
        }
    }
    match seen.iter().position(|s| !s) {
        Some(pc) => Err(format!("insn {pc} is unreachable")),
        None => Ok(()),
    }
}

/// What a register holds during interpretation: unset, the context
/// pointer plus an offset, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    Unset,
    Ctx(i64),
    Scalar(u64),
}

/// Runs `prog` with r1 pointing at `ctx` and returns r0 at exit. Errors
/// name the instruction and what the kernel's verifier would object to.
pub fn run(prog: &[Insn], ctx: &[u8]) -> Result<u64, String> {
    let mut regs = [Val::Unset; REGISTERS];
    regs[R1 as usize] = Val::Ctx(0);
    let mut pc: usize = 0;
    loop {
        let Some(insn) = prog.get(pc) else {
            return Err(format!("fell off the end of the program at {pc}"));
        };
        let here = pc;
        let at = |what: &str| format!("insn {here} ({insn:?}): {what}");
        if insn.dst as usize >= REGISTERS || insn.src as usize >= REGISTERS {
            return Err(at("no such register"));
        }
        if insn.dst == 10 && insn.code & 0x07 != CLASS_JMP {
            return Err(at("r10 is read-only"));
        }
        let scalar = |r: u8| match regs[r as usize] {
            Val::Scalar(v) => Ok(v),
            Val::Unset => Err(at(&format!("r{r} is read before it is set"))),
            Val::Ctx(_) => Err(at(&format!("r{r} is a pointer, not a number"))),
        };
        let op = insn.code & 0xf0;
        match insn.code & 0x07 {
            CLASS_LDX => {
                let size = match insn.code & 0x18 {
                    SIZE_W => 4,
                    SIZE_H => 2,
                    SIZE_B => 1,
                    SIZE_DW => 8,
                    _ => unreachable!("two bits"),
                };
                if insn.code & 0xe0 != MODE_MEM {
                    return Err(at("only memory loads are supported"));
                }
                let Val::Ctx(base) = regs[insn.src as usize] else {
                    return Err(at("load from something other than the context"));
                };
                let start = base + i64::from(insn.off);
                if start < 0 || start % size != 0 || (start + size) as usize > ctx.len() {
                    return Err(at(&format!("context read of {size} bytes at {start}")));
                }
                let s = start as usize;
                let mut v = [0u8; 8];
                v[..size as usize].copy_from_slice(&ctx[s..s + size as usize]);
                regs[insn.dst as usize] = Val::Scalar(u64::from_le_bytes(v));
                pc += 1;
            }
            class @ (CLASS_ALU | CLASS_ALU64) => {
                let wide = class == CLASS_ALU64;
                let rhs = if insn.code & SRC_X != 0 {
                    scalar(insn.src)?
                } else if wide {
                    insn.imm as i64 as u64
                } else {
                    insn.imm as u32 as u64
                };
                let lhs = if op == Alu::Mov as u8 {
                    0
                } else {
                    scalar(insn.dst)?
                };
                let (lhs, rhs) = if wide {
                    (lhs, rhs)
                } else {
                    (lhs & 0xffff_ffff, rhs & 0xffff_ffff)
                };
                let bits = if wide { 64 } else { 32 };
                let shift_ok = || {
                    if rhs < bits {
                        Ok(rhs as u32)
                    } else {
                        Err(at(&format!("shift by {rhs}")))
                    }
                };
                let v = match op {
                    x if x == Alu::Add as u8 => lhs.wrapping_add(rhs),
                    x if x == Alu::Sub as u8 => lhs.wrapping_sub(rhs),
                    x if x == Alu::Or as u8 => lhs | rhs,
                    x if x == Alu::And as u8 => lhs & rhs,
                    x if x == Alu::Xor as u8 => lhs ^ rhs,
                    x if x == Alu::Lsh as u8 => lhs << shift_ok()?,
                    x if x == Alu::Rsh as u8 => lhs >> shift_ok()?,
                    x if x == Alu::Mov as u8 => rhs,
                    _ => return Err(at("unsupported ALU operation")),
                };
                let v = if wide { v } else { v & 0xffff_ffff };
                regs[insn.dst as usize] = Val::Scalar(v);
                pc += 1;
            }
            CLASS_JMP => {
                if op == JMP_EXIT {
                    return scalar(R0);
                }
                let taken = if op == JMP_JA {
                    true
                } else {
                    let lhs = scalar(insn.dst)?;
                    let rhs = if insn.code & SRC_X != 0 {
                        scalar(insn.src)?
                    } else {
                        insn.imm as i64 as u64
                    };
                    match op {
                        x if x == Jmp::Eq as u8 => lhs == rhs,
                        x if x == Jmp::Ne as u8 => lhs != rhs,
                        x if x == Jmp::Gt as u8 => lhs > rhs,
                        x if x == Jmp::Ge as u8 => lhs >= rhs,
                        x if x == Jmp::Lt as u8 => lhs < rhs,
                        x if x == Jmp::Le as u8 => lhs <= rhs,
                        x if x == Jmp::Set as u8 => lhs & rhs != 0,
                        _ => return Err(at("unsupported jump")),
                    }
                };
                if insn.off < 0 {
                    return Err(at("backward jump (the filter must be loop-free)"));
                }
                pc += 1;
                if taken {
                    pc += insn.off as usize;
                    if pc >= prog.len() {
                        return Err(at("jump out of the program"));
                    }
                }
            }
            _ => return Err(at("unsupported instruction class")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_the_kernel_layout() {
        // r2 = *(u32 *)(r1 + 4): 0x61, dst 2 | src 1 << 4, off 4.
        assert_eq!(
            Insn::ldx_w(R2, R1, 4).encode(),
            [0x61, 0x12, 4, 0, 0, 0, 0, 0]
        );
        // w3 &= 0xffff: BPF_ALU | BPF_AND | BPF_K = 0x54.
        assert_eq!(
            Insn::alu32_imm(Alu::And, R3, 0xffff).encode(),
            [0x54, 0x03, 0, 0, 0xff, 0xff, 0, 0]
        );
        // w0 = 1: 0xb4.
        assert_eq!(
            Insn::alu32_imm(Alu::Mov, R0, 1).encode(),
            [0xb4, 0, 0, 0, 1, 0, 0, 0]
        );
        // if r4 != 8 goto +3: BPF_JMP | BPF_JNE | BPF_K = 0x55.
        assert_eq!(
            Insn::jmp_imm(Jmp::Ne, R4, 8, 3).encode(),
            [0x55, 0x04, 3, 0, 8, 0, 0, 0]
        );
        assert_eq!(Insn::exit().encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        let i = Insn::jmp_imm(Jmp::Eq, R5, -2, -7);
        assert_eq!(Insn::decode(i.encode()), i);
        assert_eq!(encode(&[Insn::exit(), Insn::exit()]).len(), 16);
    }

    fn ctx(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn interpreter_computes_alu_loads_and_jumps() {
        let prog = [
            Insn::ldx_w(R2, R1, 0),
            Insn::alu32_imm(Alu::Rsh, R2, 16),
            Insn::ldx_w(R3, R1, 4),
            Insn::alu32_reg(Alu::Add, R2, R3),
            Insn::jmp_imm(Jmp::Gt, R2, 10, 2),
            Insn::alu32_imm(Alu::Mov, R0, 7),
            Insn::exit(),
            Insn::alu32_reg(Alu::Mov, R0, R2),
            Insn::exit(),
        ];
        assert_eq!(run(&prog, &ctx(&[3 << 16, 4])), Ok(7));
        assert_eq!(run(&prog, &ctx(&[3 << 16, 40])), Ok(43));
        // 32-bit ALU wraps at 32 bits.
        assert_eq!(run(&prog, &ctx(&[0xffff << 16, 0xffff_ffff])), Ok(0xfffe));
    }

    #[test]
    fn unreachable_code_and_falling_off_are_found() {
        let ret = [Insn::alu32_imm(Alu::Mov, R0, 0), Insn::exit()];
        assert_eq!(reachable(&ret), Ok(()));
        let dead = [ret[0], ret[1], ret[1]];
        assert_eq!(reachable(&dead), Err("insn 2 is unreachable".into()));
        let skipped = [Insn::ja(1), ret[0], ret[0], ret[1]];
        assert_eq!(reachable(&skipped), Err("insn 1 is unreachable".into()));
        assert!(reachable(&[ret[0]]).is_err(), "no exit");
        assert!(reachable(&[Insn::jmp_imm(Jmp::Eq, R0, 0, 4), ret[1]]).is_err());
        assert!(reachable(&[Insn::ja(-1)]).is_err());
    }

    #[test]
    fn interpreter_refuses_what_the_verifier_would() {
        let c = ctx(&[0, 0, 0]);
        let e = run(&[Insn::exit()], &c).unwrap_err();
        assert!(e.contains("r0 is read before it is set"), "{e}");
        let e = run(&[Insn::ldx_w(R2, R1, 12), Insn::exit()], &c).unwrap_err();
        assert!(e.contains("context read"), "{e}");
        let e = run(&[Insn::ldx_w(R2, R1, 2), Insn::exit()], &c).unwrap_err();
        assert!(e.contains("context read"), "unaligned: {e}");
        let e = run(&[Insn::alu32_reg(Alu::Mov, R0, R1), Insn::exit()], &c).unwrap_err();
        assert!(e.contains("pointer"), "{e}");
        let e = run(&[Insn::ja(-1)], &c).unwrap_err();
        assert!(e.contains("backward"), "{e}");
        let e = run(&[Insn::ja(5), Insn::exit()], &c).unwrap_err();
        assert!(e.contains("out of the program"), "{e}");
        let e = run(&[Insn::alu32_imm(Alu::Mov, R0, 0)], &c).unwrap_err();
        assert!(e.contains("fell off"), "{e}");
        let call = Insn {
            code: 0x85,
            dst: 0,
            src: 0,
            off: 0,
            imm: 1,
        };
        assert!(run(&[call, Insn::exit()], &c).is_err());
    }
}
