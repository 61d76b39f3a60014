//! Test-only: a throwaway network namespace for the root tests beside the
//! firewall code, deleted on drop, and a way to run code inside it.

use std::process::{Command, Stdio};

pub(crate) struct TestNs(String);

impl TestNs {
    /// A new namespace named after `tag`, this process and a counter.
    pub(crate) fn new(tag: &str) -> TestNs {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("mrt{tag}-{}-{n}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .stdin(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        TestNs(name)
    }

    /// Its name (under /run/netns).
    pub(crate) fn name(&self) -> &str {
        &self.0
    }

    /// Runs `f` on a thread inside this namespace, so the sockets it opens
    /// and the nft processes it starts act on this namespace only.
    pub(crate) fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(&path).expect("open netns");
                nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("netns thread panicked")
        })
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stdin(Stdio::null())
            .status();
    }
}
