//! Root tests of anti-spoofing against the real kernel, each inside a
//! namespace it creates.

use super::rules::*;
use super::tests::guard;
use super::*;

const T: &str = "minirt_spoof001";

use crate::network::nftgen::generation;
use crate::network::testns::TestNs;

fn listing() -> String {
    nft::list_json("bridge", T).unwrap()
}

fn two_guards() -> (Guard, Guard) {
    (
        guard("mrv0123456789ab", "10.77.0.2"),
        guard("mrvfedcba987654", "10.77.0.3"),
    )
}

#[test]
fn the_kernel_listing_passes_the_check_and_nfnl_matches_nft() {
    let ns = TestNs::new("spoof");
    let (a, b) = two_guards();
    ns.run(|| {
        // What nft makes of the script is what the check expects.
        nft::apply(&render_rebuild(T, std::slice::from_ref(&a))).unwrap();
        let by_nft = listing();
        assert!(is_intact(&by_nft, std::slice::from_ref(&a)), "{by_nft}");
        // Re-applying the base keeps the elements and changes nothing.
        nft::apply(&render_table(T)).unwrap();
        assert!(is_intact(&listing(), std::slice::from_ref(&a)));

        // nfnetlink elements land exactly where nft's would.
        nfnl::add_batch(T, &elements(&b)).unwrap();
        let both = [a.clone(), b.clone()];
        assert!(is_intact(&listing(), &both), "{}", listing());
        // Adding again is fine; deleting twice is fine.
        assert_eq!(nfnl::add_batch(T, &elements(&b)).unwrap(), None);
        assert_eq!(nfnl::del_batch(T, &elements(&b)).unwrap(), None);
        assert_eq!(nfnl::del_batch(T, &elements(&b)).unwrap(), None);
        assert!(is_intact(&listing(), std::slice::from_ref(&a)));

        // A rebuild replaces whatever was there with exactly the guards.
        nft::apply(&render_rebuild(T, std::slice::from_ref(&b))).unwrap();
        assert!(
            is_intact(&listing(), std::slice::from_ref(&b)),
            "{}",
            listing()
        );
        nft::apply(&format!("flush chain bridge {T} guard")).unwrap();
        assert!(!is_intact(&listing(), std::slice::from_ref(&b)));

        // A missing table: adding reports ENOENT, deleting is a no-op.
        nft::apply(&format!("delete table bridge {T}")).unwrap();
        let (_, code) = nfnl::add_batch(T, &elements(&a)).unwrap().unwrap();
        assert_eq!(code, libc::ENOENT);
        assert_eq!(nfnl::del_batch(T, &elements(&a)).unwrap(), None);
        assert!(nft::list_json("bridge", T).is_err());

        // Every commit moves the generation the heal check keys on.
        let g0 = generation().unwrap();
        nft::apply(&render_table(T)).unwrap();
        let g1 = generation().unwrap();
        assert_ne!(g0, g1);
        nft::apply(&format!("delete table bridge {T}")).unwrap();
        assert_ne!(generation().unwrap(), g1);
    });
}

/// In a `nfnl::Shared` scope the batches go through one socket, kept
/// between them with its sequence numbers carrying on, and do what they do
/// on sockets of their own (the retry over absent elements included); the
/// socket goes with the scope.
#[test]
fn batches_in_a_shared_scope_go_through_one_socket() {
    let ns = TestNs::new("spoofsh");
    let (a, b) = two_guards();
    ns.run(|| {
        nft::apply(&render_table(T)).unwrap();
        let scope = nfnl::Shared::begin();
        assert_eq!(nfnl::shared_socket_inode(), None, "opened on first use");
        assert_eq!(nfnl::add_batch(T, &elements(&a)).unwrap(), None);
        let sock = nfnl::shared_socket_inode().expect("kept after the first batch");
        assert_eq!(nfnl::add_batch(T, &elements(&b)).unwrap(), None);
        assert_eq!(nfnl::del_batch(T, &elements(&a)).unwrap(), None);
        assert_eq!(
            nfnl::del_batch(T, &elements(&a)).unwrap(),
            None,
            "already gone"
        );
        assert_eq!(
            nfnl::shared_socket_inode(),
            Some(sock),
            "one socket for all"
        );
        assert!(
            is_intact(&listing(), std::slice::from_ref(&b)),
            "{}",
            listing()
        );
        drop(scope);
        assert_eq!(nfnl::shared_socket_inode(), None, "released with the scope");
        nft::apply(&format!("delete table bridge {T}")).unwrap();
    });
}
