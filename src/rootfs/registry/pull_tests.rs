//! Tests of the size and digest check a pulled blob streams through (`Verify`).

use super::*;

fn verify(data: &[u8], size: u64, digest: String) -> (io::Result<Vec<u8>>, Option<String>) {
    let verdict = Arc::new(Mutex::new(None));
    let mut v = Verify {
        inner: data,
        hash: Sha256::new(),
        got: 0,
        want_size: size,
        want_digest: digest,
        verdict: verdict.clone(),
        progress: None,
        reported: 0,
    };
    let mut out = vec![];
    let r = v.read_to_end(&mut out).map(|_| out);
    let found = verdict.lock().unwrap().take();
    (r, found)
}

#[test]
fn the_verifier_checks_size_and_digest_at_the_end() {
    let data = b"hello layer";
    let good = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    let (r, v) = verify(data, data.len() as u64, good.clone());
    assert_eq!(r.unwrap(), data);
    assert_eq!(v, None);
    let (r, v) = verify(&data[..5], data.len() as u64, good.clone());
    assert!(r.is_err());
    assert!(v
        .unwrap()
        .contains("truncated: the registry sent 5 of 11 bytes"));
    let (r, v) = verify(data, 4, good.clone());
    assert!(r.is_err());
    assert!(v.unwrap().contains("more than the 4 bytes"));
    let bad = format!("sha256:{}", "0".repeat(64));
    let (r, v) = verify(data, data.len() as u64, bad);
    assert!(r.is_err());
    assert!(v.unwrap().contains("does not match its digest"));
}
