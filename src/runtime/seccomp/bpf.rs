//! A small classic-BPF compiler for seccomp filters (pure).
//!
//! The input is a decision per syscall number: an action, or rules on the
//! arguments tried in order with a fallback. The output is one program:
//! check the architecture, load the number, then a binary search over
//! ranges of numbers with the same verdict (Docker's allow-list becomes a few
//! dozen ranges), ending in a return or in the rules of one syscall. So a
//! syscall in the container costs ~10 comparisons instead of a walk down a
//! list of hundreds, and the kernel checks and JITs ~200 instructions at
//! install instead of ~1600.
//!
//! 64-bit argument comparisons are done on the two 32-bit halves, the way
//! libseccomp does on 64-bit architectures.

use std::collections::BTreeMap;

/// One classic BPF instruction, as in `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Opcodes (linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const JMP_JGT_K: u16 = 0x05 | 0x20;
const JMP_JGE_K: u16 = 0x05 | 0x30;
const RET_K: u16 = 0x06;

// struct seccomp_data offsets.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARGS: u32 = 16;

/// The kernel refuses longer programs (BPF_MAXINSNS).
pub(crate) const MAX_INSTRUCTIONS: usize = 4096;

pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const RET_KILL_THREAD: u32 = 0;
pub(crate) const RET_TRAP: u32 = 0x0003_0000;
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;
pub(crate) const RET_TRACE: u32 = 0x7ff0_0000;
pub(crate) const RET_LOG: u32 = 0x7ffc_0000;
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;

/// How strong a return value is when several could apply: the kernel's
/// order (kill process > kill thread > trap > errno > trace > log > allow).
pub(crate) fn strength(ret: u32) -> u8 {
    match ret & 0xffff_0000 {
        RET_KILL_PROCESS => 7,
        RET_KILL_THREAD => 6,
        RET_TRAP => 5,
        RET_ERRNO => 4,
        RET_TRACE => 3,
        RET_LOG => 2,
        _ => 1,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// A test on one 64-bit argument (index 0..6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    pub arg: u8,
    pub op: Op,
    pub value: u64,
}

impl Cond {
    /// The reference meaning (used by tests against the compiled code).
    pub fn holds(&self, args: &[u64; 6]) -> bool {
        let a = args[self.arg as usize];
        match self.op {
            Op::Eq => a == self.value,
            Op::Ne => a != self.value,
            Op::Lt => a < self.value,
            Op::Le => a <= self.value,
            Op::Gt => a > self.value,
            Op::Ge => a >= self.value,
            Op::MaskedEq(m) => a & m == self.value,
        }
    }
}

/// What happens to one syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ret(u32),
    /// The first rule whose conditions all hold gives its return value;
    /// none does: `fallback`.
    Rules {
        rules: Vec<(Vec<Cond>, u32)>,
        fallback: u32,
    },
}

impl Verdict {
    #[cfg(test)]
    pub(crate) fn decide(&self, args: &[u64; 6]) -> u32 {
        match self {
            Verdict::Ret(r) => *r,
            Verdict::Rules { rules, fallback } => rules
                .iter()
                .find(|(conds, _)| conds.iter().all(|c| c.holds(args)))
                .map_or(*fallback, |(_, r)| *r),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BpfError {
    #[error("argument index {0} out of range")]
    ArgIndex(u8),
    #[error("the rules of one syscall are too long for a BPF jump")]
    RuleTooLong,
    #[error("filter of {0} instructions exceeds the kernel's {MAX_INSTRUCTIONS}")]
    TooLong(usize),
}

/// Compiles: `arch` must match (else the process is killed), then each
/// number in `by_nr` gets its verdict and every other number `default`.
pub fn compile(
    arch: u32,
    by_nr: &BTreeMap<u32, Verdict>,
    default: u32,
) -> Result<Vec<Insn>, BpfError> {
    let mut prog = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JMP_JEQ_K, arch, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
    ];
    prog.extend(tree(&segments(by_nr, default))?);
    if prog.len() > MAX_INSTRUCTIONS {
        return Err(BpfError::TooLong(prog.len()));
    }
    Ok(prog)
}

/// A range of syscall numbers `lo..=hi` with one verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    lo: u32,
    verdict: Verdict,
}

/// The number line cut into segments, each starting at `lo` and running to
/// the next one's start; neighbours with the same plain return are merged.
fn segments(by_nr: &BTreeMap<u32, Verdict>, default: u32) -> Vec<Segment> {
    fn push(segs: &mut Vec<Segment>, lo: u32, verdict: Verdict) {
        let same_plain = matches!(&verdict, Verdict::Ret(_))
            && segs.last().is_some_and(|l| l.verdict == verdict);
        if !same_plain {
            segs.push(Segment { lo, verdict });
        }
    }
    let mut segs: Vec<Segment> = vec![];
    let mut next = Some(0u32);
    for (nr, v) in by_nr {
        let Some(from) = next else { break };
        if *nr > from {
            push(&mut segs, from, Verdict::Ret(default));
        }
        push(&mut segs, *nr, v.clone());
        next = nr.checked_add(1);
    }
    if let Some(from) = next {
        push(&mut segs, from, Verdict::Ret(default));
    }
    segs
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// Binary search over `segs` (non-empty), the number in A.
fn tree(segs: &[Segment]) -> Result<Vec<Insn>, BpfError> {
    if let [only] = segs {
        return leaf(&only.verdict);
    }
    let mid = segs.len() / 2;
    let left = tree(&segs[..mid])?;
    let right = tree(&segs[mid..])?;
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        // nr >= start of the right half: jump over the left half.
        Ok(n) => out.push(jump(JMP_JGE_K, segs[mid].lo, n, 0)),
        Err(_) => {
            out.push(jump(JMP_JGE_K, segs[mid].lo, 0, 1));
            out.push(stmt(JMP_JA, left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    Ok(out)
}

/// A jump target inside one rule: the next instruction plus `n`, or the
/// start of the next rule.
#[derive(Clone, Copy)]
enum To {
    Skip(u8),
    Fail,
}

fn leaf(v: &Verdict) -> Result<Vec<Insn>, BpfError> {
    let (rules, fallback) = match v {
        Verdict::Ret(r) => return Ok(vec![stmt(RET_K, *r)]),
        Verdict::Rules { rules, fallback } => (rules, *fallback),
    };
    let mut out = vec![];
    for (conds, ret) in rules {
        let mut block: Vec<(u16, u32, To, To)> = vec![];
        for c in conds {
            cond(c, &mut block)?;
        }
        let len = block.len() + 1; // + the return
        for (i, (code, k, jt, jf)) in block.iter().enumerate() {
            let resolve = |t: To| -> Result<u8, BpfError> {
                match t {
                    To::Skip(n) => Ok(n),
                    To::Fail => u8::try_from(len - i - 1).map_err(|_| BpfError::RuleTooLong),
                }
            };
            if *code == LD_W_ABS || *code == ALU_AND_K {
                out.push(stmt(*code, *k));
            } else {
                out.push(jump(*code, *k, resolve(*jt)?, resolve(*jf)?));
            }
        }
        out.push(stmt(RET_K, *ret));
    }
    out.push(stmt(RET_K, fallback));
    Ok(out)
}

/// Appends the test of `c`: falls through when it holds, else To::Fail.
fn cond(c: &Cond, out: &mut Vec<(u16, u32, To, To)>) -> Result<(), BpfError> {
    if c.arg >= 6 {
        return Err(BpfError::ArgIndex(c.arg));
    }
    let lo_at = ARGS + 8 * c.arg as u32;
    let hi_at = lo_at + 4;
    let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
    let ld = |at: u32| (LD_W_ABS, at, To::Skip(0), To::Skip(0));
    let next = To::Skip(0);
    match c.op {
        Op::Eq => out.extend([
            ld(hi_at),
            (JMP_JEQ_K, vhi, next, To::Fail),
            ld(lo_at),
            (JMP_JEQ_K, vlo, next, To::Fail),
        ]),
        // Holds when either half differs.
        Op::Ne => out.extend([
            ld(hi_at),
            (JMP_JEQ_K, vhi, next, To::Skip(2)),
            ld(lo_at),
            (JMP_JEQ_K, vlo, To::Fail, next),
        ]),
        Op::MaskedEq(m) => out.extend([
            ld(hi_at),
            (ALU_AND_K, (m >> 32) as u32, next, next),
            (JMP_JEQ_K, vhi, next, To::Fail),
            ld(lo_at),
            (ALU_AND_K, m as u32, next, next),
            (JMP_JEQ_K, vlo, next, To::Fail),
        ]),
        // Decided by the high half unless it equals; then by the low half.
        Op::Gt | Op::Ge => out.extend([
            ld(hi_at),
            (JMP_JGT_K, vhi, To::Skip(3), next),
            (JMP_JEQ_K, vhi, next, To::Fail),
            ld(lo_at),
            (
                if c.op == Op::Gt { JMP_JGT_K } else { JMP_JGE_K },
                vlo,
                next,
                To::Fail,
            ),
        ]),
        Op::Lt | Op::Le => out.extend([
            ld(hi_at),
            (JMP_JGE_K, vhi, next, To::Skip(3)),
            (JMP_JEQ_K, vhi, next, To::Fail),
            ld(lo_at),
            (
                if c.op == Op::Lt { JMP_JGE_K } else { JMP_JGT_K },
                vlo,
                To::Fail,
                next,
            ),
        ]),
    }
    Ok(())
}

/// Runs `prog` on a syscall like the kernel would (the subset emitted
/// here); for tests, and for checking a compiled filter without loading it.
pub fn run(prog: &[Insn], arch: u32, nr: u32, args: &[u64; 6]) -> Option<u32> {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        let at = ARGS as usize + 8 * i;
        data[at..at + 8].copy_from_slice(&a.to_le_bytes());
    }
    let word = |at: u32| {
        let at = at as usize;
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = prog.get(pc)?;
        pc += 1;
        match i.code {
            LD_W_ABS => a = word(i.k)?,
            ALU_AND_K => a &= i.k,
            JMP_JA => pc += i.k as usize,
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                let yes = match i.code {
                    JMP_JEQ_K => a == i.k,
                    JMP_JGT_K => a > i.k,
                    _ => a >= i.k,
                };
                pc += if yes { i.jt } else { i.jf } as usize;
            }
            RET_K => return Some(i.k),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ARCH_X: u32 = 0xc000_003e;

    fn reference(by_nr: &BTreeMap<u32, Verdict>, default: u32, nr: u32, args: &[u64; 6]) -> u32 {
        by_nr.get(&nr).map_or(default, |v| v.decide(args))
    }

    #[test]
    fn allow_list_becomes_ranges() {
        let by_nr: BTreeMap<u32, Verdict> = (0..300u32)
            .filter(|n| n % 50 != 7)
            .map(|n| (n, Verdict::Ret(RET_ALLOW)))
            .collect();
        let eperm = RET_ERRNO | 1;
        let p = compile(ARCH_X, &by_nr, eperm).unwrap();
        // 300 numbers, 6 holes: 13 segments -> a couple of dozen instructions.
        assert!(p.len() < 40, "{}", p.len());
        for nr in 0..400 {
            let want = reference(&by_nr, eperm, nr, &[0; 6]);
            assert_eq!(run(&p, ARCH_X, nr, &[0; 6]), Some(want), "nr {nr}");
        }
        assert_eq!(run(&p, ARCH_X, u32::MAX, &[0; 6]), Some(eperm));
        assert_eq!(run(&p, 0x4000_0003, 1, &[0; 6]), Some(RET_KILL_PROCESS));
    }

    #[test]
    fn far_jumps_use_ja() {
        // Alternating verdicts: no merging, a deep tree with long halves.
        let by_nr: BTreeMap<u32, Verdict> = (0..2000u32)
            .map(|n| {
                (
                    n,
                    Verdict::Ret(if n % 2 == 0 { RET_ALLOW } else { RET_ERRNO | n }),
                )
            })
            .collect();
        let p = compile(ARCH_X, &by_nr, RET_KILL_THREAD).unwrap();
        assert!(p.iter().any(|i| i.code == JMP_JA));
        for nr in 0..2100 {
            assert_eq!(
                run(&p, ARCH_X, nr, &[0; 6]),
                Some(reference(&by_nr, RET_KILL_THREAD, nr, &[0; 6]))
            );
        }
    }

    #[test]
    fn limits_are_errors() {
        let bad = Verdict::Rules {
            rules: vec![(
                vec![Cond {
                    arg: 6,
                    op: Op::Eq,
                    value: 0,
                }],
                RET_ALLOW,
            )],
            fallback: 0,
        };
        let m = BTreeMap::from([(1, bad)]);
        assert_eq!(compile(ARCH_X, &m, 0), Err(BpfError::ArgIndex(6)));
        let huge = Verdict::Rules {
            rules: vec![(
                vec![
                    Cond {
                        arg: 0,
                        op: Op::MaskedEq(1),
                        value: 0
                    };
                    60
                ],
                RET_ALLOW,
            )],
            fallback: 0,
        };
        let m = BTreeMap::from([(1, huge)]);
        assert_eq!(compile(ARCH_X, &m, 0), Err(BpfError::RuleTooLong));
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Eq),
            Just(Op::Ne),
            Just(Op::Lt),
            Just(Op::Le),
            Just(Op::Gt),
            Just(Op::Ge),
            value().prop_map(Op::MaskedEq),
        ]
    }

    /// Values around the 32-bit halves' edges, where comparisons go wrong.
    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u32::MAX as u64),
            Just(1u64 << 32),
            Just((1u64 << 32) + 1),
            Just(u64::MAX),
            0u64..4,
            any::<u64>(),
        ]
    }

    fn ret() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(RET_ALLOW),
            (0u32..100).prop_map(|e| RET_ERRNO | e),
            Just(RET_KILL_PROCESS),
            Just(RET_TRAP),
            Just(RET_LOG),
        ]
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        let cond = (0u8..6, op(), value()).prop_map(|(arg, op, value)| Cond { arg, op, value });
        prop_oneof![
            ret().prop_map(Verdict::Ret),
            (
                proptest::collection::vec((proptest::collection::vec(cond, 0..4), ret()), 0..4),
                ret()
            )
                .prop_map(|(rules, fallback)| Verdict::Rules { rules, fallback }),
        ]
    }

    proptest! {
        #[test]
        fn compiled_filters_decide_like_the_rules(
            by_nr in proptest::collection::btree_map(
                prop_oneof![0u32..40, Just(u32::MAX), Just(0x4000_0000u32)], verdict(), 0..30),
            default in ret(),
            probes in proptest::collection::vec(
                (prop_oneof![0u32..45, Just(u32::MAX), Just(0x4000_0000u32)],
                 proptest::array::uniform6(value())), 1..40),
        ) {
            let p = compile(ARCH_X, &by_nr, default).unwrap();
            for (nr, args) in probes {
                prop_assert_eq!(
                    run(&p, ARCH_X, nr, &args),
                    Some(reference(&by_nr, default, nr, &args)),
                    "nr {} args {:?}", nr, args
                );
            }
        }
    }
}
