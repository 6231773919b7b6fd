//! Which other processes work for the traced one: parallel workers (`parallel worker for
//! PID N` in their title) and, on PostgreSQL 18 with io_method=worker, the cluster's
//! `io worker N` processes, which perform the traced backend's data-file reads.

use super::{FollowerRole, Pid};
use crate::process::proc::{children, parent_pid, process_title};

/// What a title says about following `leader`.
pub fn follower_role(title: &str, leader: Pid) -> Option<FollowerRole> {
    if let Some(i) = title.find("parallel worker for PID ") {
        let n: String = title[i + 24..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        return (n.parse::<Pid>().ok()? == leader).then_some(FollowerRole::ParallelWorker);
    }
    // "postgres: io worker 0" or "postgres: 18/main: io worker 2"
    let after = title.rsplit(": ").next().unwrap_or(title);
    if after.starts_with("io worker ") {
        return Some(FollowerRole::IoWorker);
    }
    None
}

/// Current followers of `leader`: processes with the same parent (the postmaster) whose
/// title names the leader, or io workers.
pub fn find_followers(leader: Pid) -> Vec<(Pid, FollowerRole)> {
    let Some(postmaster) = parent_pid(leader) else {
        return Vec::new();
    };
    // A worker's title names the leader by the pid of the server's namespace (a
    // container's differs from the host's).
    let in_ns = crate::process::ns::ns_pid(leader);
    let mut out = Vec::new();
    for pid in children(postmaster) {
        if pid == leader {
            continue;
        }
        let role = process_title(pid)
            .and_then(|t| follower_role(&t, leader).or_else(|| follower_role(&t, in_ns?)));
        if let Some(role) = role {
            out.push((pid, role));
        }
    }
    out.sort_by_key(|(pid, _)| *pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert_eq!(
            follower_role("postgres: parallel worker for PID 4242", 4242),
            Some(FollowerRole::ParallelWorker)
        );
        assert_eq!(
            follower_role("postgres: parallel worker for PID 42", 4242),
            None
        );
        assert_eq!(
            follower_role("postgres: 18/main: io worker 1", 7),
            Some(FollowerRole::IoWorker)
        );
        assert_eq!(follower_role("postgres: alice db [local] SELECT", 7), None);
    }
}
