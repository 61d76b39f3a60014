//! Parsers for the user's limit flags (`-m 64m`, `--cpus 0.5`), with Docker's
//! units, ranges and error wording; pure functions, no I/O except counting CPUs.

use super::{CgroupError, Result};

/// Docker refuses memory limits below 6 MiB (`linuxMinMemory`).
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// `--cpus` values are kept in billionths of a CPU, as Docker's `NanoCPUs`.
pub(crate) const NANOS_PER_CPU: i64 = 1_000_000_000;

/// A memory size in bytes from Docker's notation: a decimal number and an
/// optional unit b, k, m, g, t or p (powers of 1024, case-insensitive, an
/// optional `i` and `b` after it: "64m", "64MB", "64MiB", "1.5g", "1024").
/// "0" means no limit (as `docker run -m 0`); anything else must be at least
/// 6 MiB.
pub fn parse_memory(s: &str) -> Result<i64> {
    let bytes = parse_size(s)?;
    if bytes != 0 && bytes < MIN_MEMORY {
        return Err(CgroupError::Invalid(format!(
            "invalid memory limit '{s}': Minimum memory limit allowed is 6MB"
        )));
    }
    Ok(bytes)
}

/// Size in bytes without the minimum check (Docker's `RAMInBytes`).
pub fn parse_size(s: &str) -> Result<i64> {
    let invalid = || {
        CgroupError::Invalid(format!(
            "invalid size: '{s}' (expected a number with an optional unit b, k, m, g or t, as in 64m)"
        ))
    };
    let t = s.trim();
    if t.starts_with('-') {
        return Err(CgroupError::Invalid(format!(
            "invalid size: '{s}' (a size cannot be negative)"
        )));
    }
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        "p" | "pb" | "pi" | "pib" => 50,
        _ => return Err(invalid()),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || frac.contains('.') || (num.contains('.') && frac.is_empty()) {
        return Err(invalid());
    }
    let too_large =
        || CgroupError::Invalid(format!("invalid size: '{s}' is too large (at most 8 EiB)"));
    // Exact integer arithmetic: "1.5g" must be 1.5 * 2^30, not a float approximation.
    let int: u128 = int.parse().map_err(|_| too_large())?;
    let mut bytes = int.checked_shl(shift).ok_or_else(too_large)?;
    if int >> (127 - shift) != 0 {
        return Err(too_large());
    }
    if !frac.is_empty() {
        // 18 digits keep `f << shift` inside a u128; finer than a byte means nothing.
        let digits = &frac[..frac.len().min(18)];
        let f: u128 = digits.parse().map_err(|_| invalid())?;
        bytes += (f << shift) / 10u128.pow(digits.len() as u32);
    }
    i64::try_from(bytes).map_err(|_| too_large())
}

/// `--cpus` as nano CPUs ("0.5" -> 500_000_000), checked against this
/// machine's CPU count like Docker does.
pub fn parse_cpus(s: &str) -> Result<i64> {
    parse_cpus_for(s, online_cpus())
}

/// `parse_cpus` for a machine with `ncpus` CPUs (pure, for tests).
pub fn parse_cpus_for(s: &str, ncpus: i64) -> Result<i64> {
    let t = s.trim();
    let invalid = || {
        CgroupError::Invalid(format!(
            "invalid argument '{s}' for --cpus: expected a decimal number of CPUs, as in 1.5"
        ))
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let is_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !is_digits(int) || !is_digits(frac) {
        return Err(invalid());
    }
    let significant = frac.trim_end_matches('0');
    if significant.len() > 9 {
        return Err(CgroupError::Invalid(format!(
            "invalid argument '{s}' for --cpus: value is too precise"
        )));
    }
    let range = || {
        CgroupError::Invalid(format!(
            "range of CPUs is from 0.01 to {ncpus}.00, as there are only {ncpus} CPUs available"
        ))
    };
    let whole: i64 = if int.is_empty() {
        0
    } else {
        // Only an absurdly long number fails here, and it is out of range anyway.
        int.parse().map_err(|_| range())?
    };
    let frac_nanos: i64 = if significant.is_empty() {
        0
    } else {
        let scale = 10i64.pow(9 - significant.len() as u32);
        significant.parse::<i64>().map_err(|_| invalid())? * scale
    };
    let nanos = whole
        .checked_mul(NANOS_PER_CPU)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(range)?;
    // Below 0.01 CPU the CFS quota would fall under the kernel's 1 ms minimum.
    if nanos < NANOS_PER_CPU / 100 || nanos > ncpus.saturating_mul(NANOS_PER_CPU) {
        return Err(range());
    }
    Ok(nanos)
}

/// CPUs this process may run on (what Docker's `runtime.NumCPU` counts). Not
/// `available_parallelism`, which also divides by a cgroup CPU quota.
pub fn online_cpus() -> i64 {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set) as i64;
            if n > 0 {
                return n;
            }
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: i64 = 1024 * 1024;

    #[test]
    fn memory_units_are_powers_of_1024_and_case_insensitive() {
        assert_eq!(parse_memory("64m").unwrap(), 64 * MIB);
        assert_eq!(parse_memory("64M").unwrap(), 64 * MIB);
        assert_eq!(parse_memory("64MiB").unwrap(), 64 * MIB);
        assert_eq!(parse_memory("64mb").unwrap(), 64 * MIB);
        assert_eq!(parse_memory("1g").unwrap(), 1024 * MIB);
        assert_eq!(parse_memory("1.5G").unwrap(), 1536 * MIB);
        assert_eq!(parse_memory("7000k").unwrap(), 7000 * 1024);
        assert_eq!(parse_memory("1t").unwrap(), 1024 * 1024 * MIB);
        assert_eq!(parse_memory("10485760").unwrap(), 10 * MIB);
        assert_eq!(parse_memory("10485760b").unwrap(), 10 * MIB);
        assert_eq!(parse_memory(" 8 m ").unwrap(), 8 * MIB);
        assert_eq!(
            parse_memory("1.0000000000000000000001g").unwrap(),
            1024 * MIB
        );
        assert_eq!(parse_memory("6.5m").unwrap(), 6 * MIB + 512 * 1024);
    }

    #[test]
    fn memory_zero_means_unlimited_and_small_limits_are_refused() {
        assert_eq!(parse_memory("0").unwrap(), 0);
        assert_eq!(parse_memory("6m").unwrap(), MIN_MEMORY);
        let e = parse_memory("5m").unwrap_err().to_string();
        assert!(e.contains("Minimum memory limit allowed is 6MB"), "{e}");
        assert!(parse_memory("1024").is_err());
        assert!(parse_memory("6291455").is_err());
    }

    #[test]
    fn memory_junk_negative_and_overflow_are_one_line_errors() {
        for junk in [
            "", "m", "abc", "-64m", "64x", "64 mm", "1..5g", "1.g", ".5g", "64m64", "+5g", "0x10m",
        ] {
            let e = parse_memory(junk).unwrap_err().to_string();
            assert!(e.starts_with("invalid size: '"), "{junk}: {e}");
            assert!(!e.contains('\n'));
        }
        for huge in [
            "8192p",
            "9223372036854775808",
            "99999999999999999999999999999999999999999t",
        ] {
            let e = parse_memory(huge).unwrap_err().to_string();
            assert!(e.contains("too large"), "{huge}: {e}");
        }
        assert_eq!(parse_memory("8191p").unwrap(), 8191i64 << 50);
        assert_eq!(parse_memory("9223372036854775807").unwrap(), i64::MAX);
    }

    #[test]
    fn cpus_are_nano_cpus_within_the_machine() {
        assert_eq!(parse_cpus_for("0.5", 2).unwrap(), 500_000_000);
        assert_eq!(parse_cpus_for("2", 2).unwrap(), 2_000_000_000);
        assert_eq!(parse_cpus_for("1.25", 2).unwrap(), 1_250_000_000);
        assert_eq!(parse_cpus_for(".5", 2).unwrap(), 500_000_000);
        assert_eq!(parse_cpus_for("0.01", 2).unwrap(), 10_000_000);
        assert_eq!(parse_cpus_for("1.000000001", 2).unwrap(), 1_000_000_001);
        assert_eq!(parse_cpus_for("1.5000000000", 2).unwrap(), 1_500_000_000);
        let range = "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available";
        for bad in ["0", "0.0", "0.009", "2.01", "3", "99999999999999999999"] {
            assert_eq!(
                parse_cpus_for(bad, 2).unwrap_err().to_string(),
                range,
                "{bad}"
            );
        }
        for junk in ["", ".", "-1", "abc", "1.5.0", "1e3", "0,5"] {
            let e = parse_cpus_for(junk, 2).unwrap_err().to_string();
            assert!(e.contains("--cpus"), "{junk}: {e}");
        }
        let e = parse_cpus_for("1.0000000001", 2).unwrap_err().to_string();
        assert!(e.contains("too precise"), "{e}");
    }

    #[test]
    fn this_machine_has_cpus() {
        let n = online_cpus();
        assert!(n >= 1);
        assert_eq!(parse_cpus(&n.to_string()).unwrap(), n * NANOS_PER_CPU);
    }

    proptest! {
        #[test]
        fn memory_round_trips_through_every_unit(
            n in 0i64..(1 << 40),
            unit in 0usize..5,
            upper in any::<bool>(),
            suffix in 0usize..3,
        ) {
            let (letter, shift) = [("b", 0), ("k", 10), ("m", 20), ("g", 30), ("t", 40)][unit];
            let n = n >> shift.min(30); // keep n << shift inside i64
            let tail = if letter == "b" { "" } else { ["", "b", "ib"][suffix] };
            let mut text = format!("{n}{letter}{tail}");
            if upper {
                text = text.to_uppercase();
            }
            let expect = n << shift;
            if expect == 0 || expect >= MIN_MEMORY {
                prop_assert_eq!(parse_memory(&text).unwrap(), expect);
            } else {
                prop_assert!(parse_memory(&text).is_err());
            }
            prop_assert_eq!(parse_size(&text).unwrap(), expect);
        }

        #[test]
        fn memory_in_bytes_round_trips(n in MIN_MEMORY..i64::MAX) {
            prop_assert_eq!(parse_memory(&n.to_string()).unwrap(), n);
        }

        #[test]
        fn cpus_round_trip_in_hundredths(h in 1i64..=800) {
            let text = format!("{}.{:02}", h / 100, h % 100);
            prop_assert_eq!(parse_cpus_for(&text, 8).unwrap(), h * 10_000_000);
        }
    }
}

#[cfg(test)]
mod hostile_proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn size_and_cpu_parsers_never_panic(s in "\\PC{0,24}|[0-9.eEkKmMgGtTbBiI+-]{0,24}") {
            if let Ok(n) = parse_memory(&s) {
                prop_assert!(n == 0 || n >= MIN_MEMORY);
            }
            if let Ok(n) = parse_size(&s) {
                prop_assert!(n >= 0);
            }
            if let Ok(n) = parse_cpus_for(&s, 4) {
                prop_assert!(n > 0 && n <= 4 * NANOS_PER_CPU);
            }
        }
    }
}
