//! Which devices a container may create (mknod), read and write: one rule
//! list, written to v1's `devices.allow`/`devices.deny` or compiled into the
//! eBPF program that cgroup v2 runs on every device access (pure; the loading
//! lives in `v2_devices.rs`).
//!
//! The rules read as in v1 (`c 1:3 rwm`, `b *:* m`, `a`), and a request
//! (block or char device, major, minor, the accesses asked for) is decided by
//! the last rule that matches it, or by the default when none does. A rule
//! matches when its type, major and minor match (`a` and `*` match any) and
//! it grants every access asked for at once: opening a device read-write
//! needs one rule with both `r` and `w`, as v1's exception list does.

use std::fmt;

use super::ebpf::{Alu, Insn, Jmp, R0, R1, R2, R3, R4, R5};
use super::{CgroupError, Result};

/// Accesses, with the kernel's bit values (`BPF_DEVCG_ACC_*`).
pub(crate) const MKNOD: u8 = 1;
pub(crate) const READ: u8 = 2;
pub(crate) const WRITE: u8 = 4;
pub(crate) const ALL_ACCESS: u8 = MKNOD | READ | WRITE;

/// Device types; block and char carry the kernel's `BPF_DEVCG_DEV_*` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    All,
    Block,
    Char,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::All => 0,
            Kind::Block => 1,
            Kind::Char => 2,
        }
    }
}

/// One line of a v1 device list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub allow: bool,
    pub kind: Kind,
    /// None is `*`.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

/// Majors and minors go into the program as 32-bit immediates that the
/// kernel sign-extends; real ones are far below (12 and 20 bits).
const MAX_NUMBER: u32 = i32::MAX as u32;

impl DeviceRule {
    /// Parses a v1 rule (`TYPE MAJOR:MINOR ACCESS`, or `a` for everything).
    pub fn parse(allow: bool, s: &str) -> Result<DeviceRule> {
        let bad = |why: &str| CgroupError::Invalid(format!("invalid device rule '{s}': {why}"));
        let mut it = s.split_whitespace();
        let kind = match it.next() {
            Some("a") => Kind::All,
            Some("b") => Kind::Block,
            Some("c") => Kind::Char,
            _ => return Err(bad("the type must be a, b or c")),
        };
        let Some(numbers) = it.next() else {
            return match kind {
                Kind::All => Ok(DeviceRule {
                    allow,
                    kind,
                    major: None,
                    minor: None,
                    access: ALL_ACCESS,
                }),
                _ => Err(bad("expected MAJOR:MINOR after the type")),
            };
        };
        let number = |n: &str| -> Result<Option<u32>> {
            if n == "*" {
                return Ok(None);
            }
            match n.parse::<u32>() {
                Ok(v) if v <= MAX_NUMBER => Ok(Some(v)),
                _ => Err(bad("a device number must be '*' or a number below 2^31")),
            }
        };
        let (major, minor) = numbers
            .split_once(':')
            .ok_or_else(|| bad("expected MAJOR:MINOR"))?;
        let (major, minor) = (number(major)?, number(minor)?);
        let letters = it.next().unwrap_or("rwm");
        if it.next().is_some() {
            return Err(bad("unexpected text after the access"));
        }
        let mut access = 0;
        for ch in letters.chars() {
            access |= match ch {
                'r' => READ,
                'w' => WRITE,
                'm' => MKNOD,
                _ => return Err(bad("the access must be made of r, w and m")),
            };
        }
        if access == 0 {
            return Err(bad("empty access"));
        }
        Ok(DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        })
    }

    #[cfg(test)]
    fn matches(&self, r: &Request) -> bool {
        (self.kind == Kind::All || self.kind == r.kind)
            && self.major.is_none_or(|m| m == r.major)
            && self.minor.is_none_or(|m| m == r.minor)
            && r.access & !self.access == 0
    }

    /// Matches every request: nothing before it in the list can matter.
    fn matches_all(&self) -> bool {
        self.kind == Kind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ALL_ACCESS
    }
}

impl fmt::Display for DeviceRule {
    /// The v1 spelling, for `devices.allow`/`devices.deny`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.matches_all() {
            return f.write_str("a");
        }
        let kind = match self.kind {
            Kind::All => 'a',
            Kind::Block => 'b',
            Kind::Char => 'c',
        };
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        let mut access = String::new();
        for (bit, ch) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(ch);
            }
        }
        write!(f, "{kind} {}:{} {access}", n(self.major), n(self.minor))
    }
}

/// One device access the kernel asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg(test)]
pub(crate) struct Request {
    /// Block or Char (the kernel never asks about All).
    pub kind: Kind,
    pub major: u32,
    pub minor: u32,
    pub access: u8,
}

#[cfg(test)]
impl Request {
    /// The program's context, `struct bpf_cgroup_dev_ctx`: access_type
    /// (access << 16 | type), major, minor, each a native-endian u32.
    pub(crate) fn context(&self) -> [u8; 12] {
        let access_type = (u32::from(self.access) << 16) | self.kind.code();
        let mut c = [0u8; 12];
        c[0..4].copy_from_slice(&access_type.to_ne_bytes());
        c[4..8].copy_from_slice(&self.major.to_ne_bytes());
        c[8..12].copy_from_slice(&self.minor.to_ne_bytes());
        c
    }
}

/// A default verdict and the rules that make exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DevicePolicy {
    pub default_allow: bool,
    pub rules: Vec<DeviceRule>,
}

/// Docker's default allow-list, after a deny of everything: mknod of any
/// device (the image's /dev may need it), read/write only of harmless ones.
pub(crate) const DEFAULT_ALLOW: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",    // /dev/null
    "c 1:5 rwm",    // /dev/zero
    "c 1:7 rwm",    // /dev/full
    "c 1:8 rwm",    // /dev/random
    "c 1:9 rwm",    // /dev/urandom
    "c 5:0 rwm",    // /dev/tty
    "c 5:1 rwm",    // /dev/console
    "c 5:2 rwm",    // /dev/ptmx
    "c 136:* rwm",  // /dev/pts/*
    "c 10:200 rwm", // /dev/net/tun
];

impl DevicePolicy {
    /// Docker's defaults, or every device for a privileged container.
    pub(crate) fn for_container(all_devices: bool) -> Result<DevicePolicy> {
        if all_devices {
            return Ok(DevicePolicy {
                default_allow: true,
                rules: Vec::new(),
            });
        }
        Ok(DevicePolicy {
            default_allow: false,
            rules: DEFAULT_ALLOW
                .iter()
                .map(|r| DeviceRule::parse(true, r))
                .collect::<Result<_>>()?,
        })
    }

    /// Allows everything, so no filter is needed at all.
    pub(crate) fn allows_everything(&self) -> bool {
        self.default_allow && self.rules.iter().all(|r| r.allow)
    }

    /// The reference verdict the program must reproduce.
    #[cfg(test)]
    pub fn allows(&self, r: &Request) -> bool {
        self.rules
            .iter()
            .rev()
            .find(|rule| rule.matches(r))
            .map_or(self.default_allow, |rule| rule.allow)
    }

    /// The `BPF_PROG_TYPE_CGROUP_DEVICE` program: returns 1 to allow the
    /// access, 0 to refuse it (EPERM). The rules are tried last first, each
    /// a block of checks that jump past it on a mismatch; a rule matching
    /// everything ends the program (the verifier refuses unreachable code).
    pub fn program(&self) -> Vec<Insn> {
        let mut prog = vec![
            Insn::ldx_w(R2, R1, 0),
            Insn::alu32_imm(Alu::And, R2, 0xffff), // type
            Insn::ldx_w(R3, R1, 0),
            Insn::alu32_imm(Alu::Rsh, R3, 16), // access
            Insn::ldx_w(R4, R1, 4),            // major
            Insn::ldx_w(R5, R1, 8),            // minor
        ];
        let verdict = |allow: bool| {
            [
                Insn::alu32_imm(Alu::Mov, R0, i32::from(allow)),
                Insn::exit(),
            ]
        };
        for rule in self.rules.iter().rev() {
            if rule.matches_all() {
                prog.extend(verdict(rule.allow));
                return prog;
            }
            // Checks jump to the end of the block; offsets are patched below.
            let mut checks: Vec<Insn> = Vec::new();
            if rule.kind != Kind::All {
                checks.push(Insn::jmp_imm(Jmp::Ne, R2, rule.kind.code() as i32, 0));
            }
            if rule.access != ALL_ACCESS {
                // Asked-for bits outside the rule's: no match. r1 (the context) is spent.
                checks.push(Insn::alu32_reg(Alu::Mov, R1, R3));
                checks.push(Insn::alu32_imm(Alu::And, R1, i32::from(!rule.access)));
                checks.push(Insn::jmp_imm(Jmp::Ne, R1, 0, 0));
            }
            if let Some(m) = rule.major {
                checks.push(Insn::jmp_imm(Jmp::Ne, R4, m as i32, 0));
            }
            if let Some(m) = rule.minor {
                checks.push(Insn::jmp_imm(Jmp::Ne, R5, m as i32, 0));
            }
            checks.extend(verdict(rule.allow));
            let n = checks.len();
            for (i, insn) in checks.iter_mut().enumerate() {
                if insn.code & 0x07 == 0x05 && insn.code != Insn::exit().code {
                    insn.off = (n - i - 1) as i16;
                }
            }
            prog.extend(checks);
        }
        prog.extend(verdict(self.default_allow));
        prog
    }
}

#[cfg(test)]
mod tests {
    use super::super::ebpf;
    use super::*;
    use proptest::prelude::*;

    fn rule(s: &str) -> DeviceRule {
        DeviceRule::parse(true, s).unwrap()
    }

    fn req(kind: Kind, major: u32, minor: u32, access: u8) -> Request {
        Request {
            kind,
            major,
            minor,
            access,
        }
    }

    fn run(p: &DevicePolicy, r: &Request) -> bool {
        let prog = p.program();
        ebpf::reachable(&prog).unwrap();
        match ebpf::run(&prog, &r.context()) {
            Ok(0) => false,
            Ok(1) => true,
            other => panic!("{r:?}: {other:?}\n{prog:#?}"),
        }
    }

    #[test]
    fn rules_parse_and_print_as_v1_writes_them() {
        for s in DEFAULT_ALLOW {
            assert_eq!(rule(s).to_string(), *s);
        }
        assert_eq!(rule("a").to_string(), "a");
        assert_eq!(rule("a *:* rwm").to_string(), "a");
        assert_eq!(rule("b 8:*").to_string(), "b 8:* rwm");
        assert_eq!(rule("c 1:3 mwr").access, ALL_ACCESS);
        assert_eq!(rule("c 4:64 w").access, WRITE);
        for bad in [
            "",
            "x 1:3 rw",
            "c",
            "c 1 rw",
            "c 1:x rw",
            "c -1:3 rw",
            "c 1:3 rx",
            "c 1:3 rw extra",
            "c 4294967295:1 r",
        ] {
            let e = DeviceRule::parse(true, bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid device rule"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn docker_defaults_allow_stdio_devices_and_refuse_disks() {
        let p = DevicePolicy::for_container(false).unwrap();
        assert!(!p.allows_everything());
        let rw = READ | WRITE;
        let cases = [
            (req(Kind::Char, 1, 3, rw), true, "/dev/null read-write"),
            (req(Kind::Char, 136, 7, rw), true, "/dev/pts/7"),
            (req(Kind::Char, 5, 2, READ), true, "/dev/ptmx"),
            (req(Kind::Block, 8, 0, MKNOD), true, "mknod of a disk"),
            (req(Kind::Block, 8, 0, READ), false, "reading a disk"),
            (req(Kind::Block, 8, 0, MKNOD | READ), false, "mknod+read"),
            (req(Kind::Char, 1, 1, READ), false, "/dev/mem"),
            (req(Kind::Char, 10, 237, WRITE), false, "/dev/loop-control"),
            (req(Kind::Char, 4, 1, WRITE), false, "/dev/tty1"),
        ];
        for (r, want, what) in cases {
            assert_eq!(p.allows(&r), want, "model: {what}");
            assert_eq!(run(&p, &r), want, "program: {what}");
        }
        let all = DevicePolicy::for_container(true).unwrap();
        assert!(all.allows_everything());
        assert!(run(&all, &req(Kind::Block, 8, 0, READ | WRITE)));
    }

    #[test]
    fn a_rule_matching_everything_ends_the_program() {
        let p = DevicePolicy {
            default_allow: false,
            rules: vec![rule("c 1:3 rwm"), rule("a"), rule("b 8:* r")],
        };
        let prog = p.program();
        ebpf::reachable(&prog).unwrap();
        // Prologue, the `b 8:* r` block (type, 3 access insns, major, verdict), then `a`.
        assert_eq!(prog.len(), 6 + 7 + 2);
        let deny_all = DevicePolicy {
            default_allow: true,
            rules: vec![DeviceRule::parse(false, "a").unwrap()],
        };
        assert!(!run(&deny_all, &req(Kind::Char, 1, 3, READ)));
    }

    fn arb_kind(all: bool) -> impl Strategy<Value = Kind> {
        let kinds = if all {
            vec![Kind::All, Kind::Block, Kind::Char]
        } else {
            vec![Kind::Block, Kind::Char]
        };
        proptest::sample::select(kinds)
    }

    fn arb_rule() -> impl Strategy<Value = DeviceRule> {
        (
            any::<bool>(),
            arb_kind(true),
            proptest::option::of(0u32..4),
            proptest::option::of(0u32..4),
            1u8..=ALL_ACCESS,
        )
            .prop_map(|(allow, kind, major, minor, access)| DeviceRule {
                allow,
                kind,
                major,
                minor,
                access,
            })
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        (arb_kind(false), 0u32..5, 0u32..5, 1u8..=ALL_ACCESS).prop_map(
            |(kind, major, minor, access)| Request {
                kind,
                major,
                minor,
                access,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Small device numbers make rules and requests collide often.
        #[test]
        fn program_verdict_equals_the_rule_list(
            default_allow in any::<bool>(),
            rules in proptest::collection::vec(arb_rule(), 0..8),
            requests in proptest::collection::vec(arb_request(), 1..16),
        ) {
            let p = DevicePolicy { default_allow, rules };
            for r in &requests {
                prop_assert_eq!(run(&p, r), p.allows(r), "{:?} {:?}", p, r);
            }
        }

        #[test]
        fn printed_rules_parse_back(r in arb_rule()) {
            let back = DeviceRule::parse(r.allow, &r.to_string()).unwrap();
            prop_assert_eq!(back, r);
        }
    }
}
