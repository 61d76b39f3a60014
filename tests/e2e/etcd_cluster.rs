//! A real three-member etcd cluster for the overlay tests: one member per
//! test host, listening on that host's underlay address inside its network
//! namespace, started by the test, waited for (health, not sleeps), and
//! killed (by pid) with its data removed on drop, even when a test fails.

use crate::common::*;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub struct EtcdCluster {
    /// One per member; None once killed.
    members: Vec<Option<Proc>>,
    /// (netns, address) of each member.
    at: Vec<(String, String)>,
    _dir: TempDir,
    initial: String,
    token: String,
}

/// Member `i` of the cluster (its data directory kept across restarts: a
/// restarted member rejoins with its old identity).
fn spawn(dir: &TempDir, at: &[(String, String)], i: usize, initial: &str, token: &str) -> Proc {
    let (ns, a) = &at[i];
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.0.join(format!("m{i}.log")))
        .unwrap();
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg("etcd")
        .args(["--name", &format!("m{i}")])
        .args(["--data-dir", &format!("{}/m{i}", dir.path())])
        .args(["--listen-client-urls", &format!("http://{a}:2379")])
        .args(["--advertise-client-urls", &format!("http://{a}:2379")])
        .args(["--listen-peer-urls", &format!("http://{a}:2380")])
        .args(["--initial-advertise-peer-urls", &format!("http://{a}:2380")])
        .args(["--initial-cluster", initial])
        .args(["--initial-cluster-state", "new"])
        .args(["--initial-cluster-token", token])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start etcd");
    Proc(child)
}

impl EtcdCluster {
    /// Starts one member in each `(netns, address)` and waits until the
    /// cluster is healthy.
    pub fn start(at: &[(String, String)]) -> EtcdCluster {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = TempDir::new("etcd");
        let initial: Vec<String> = at
            .iter()
            .enumerate()
            .map(|(i, (_, a))| format!("m{i}=http://{a}:2380"))
            .collect();
        let initial = initial.join(",");
        let token = format!("minirt-{}-{n}", std::process::id());
        let members = (0..at.len())
            .map(|i| Some(spawn(&dir, at, i, &initial, &token)))
            .collect();
        let c = EtcdCluster {
            members,
            at: at.to_vec(),
            _dir: dir,
            initial,
            token,
        };
        c.wait_healthy(c.alive().len());
        c
    }

    /// `etcd://A:2379,B:2379,C:2379`
    pub fn store(&self) -> String {
        let eps: Vec<String> = self.at.iter().map(|(_, a)| format!("{a}:2379")).collect();
        format!("etcd://{}", eps.join(","))
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].is_some())
            .collect()
    }

    /// `etcdctl` against the live members, run in a live member's netns.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let live = self.alive();
        let i = *live.first().expect("a live etcd member");
        let eps: Vec<String> = live
            .iter()
            .map(|i| format!("http://{}:2379", self.at[*i].1))
            .collect();
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.at[i].0))
            .args(["--", "etcdctl", "--command-timeout=3s"])
            .arg(format!("--endpoints={}", eps.join(",")))
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .output()
            .expect("etcdctl")
    }

    /// Waits until `n` members answer healthy.
    pub fn wait_healthy(&self, n: usize) {
        let mut last = String::new();
        let ok = eventually(Duration::from_secs(30), || {
            let o = self.etcdctl(&["endpoint", "health"]);
            last = format!("{}{}", stdout(&o), stderr(&o));
            o.status.success() && last.matches("is healthy").count() >= n
        });
        assert!(ok, "etcd cluster not healthy: {last}");
    }

    /// Keys under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let o = self.etcdctl(&["get", "--prefix", "--keys-only", prefix]);
        assert!(o.status.success(), "etcdctl get: {}", stderr(&o));
        let mut v: Vec<String> = stdout(&o)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    /// Kills member `i` (SIGKILL by pid).
    pub fn kill(&mut self, i: usize) {
        self.members[i] = None;
    }

    /// Starts every killed member again and waits for the whole cluster.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].is_none() {
                self.members[i] = Some(spawn(&self._dir, &self.at, i, &self.initial, &self.token));
            }
        }
        self.wait_healthy(self.members.len());
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for m in &mut self.members {
            *m = None;
        }
    }
}
