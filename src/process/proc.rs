//! The one reader of /proc for a live process.

pub type Pid = i32;

/// A postgres process title, from `/proc/PID/cmdline` (set_ps_display overwrites argv, so
/// the title is the whole area with NULs turned into spaces).
pub fn process_title(pid: Pid) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let s = String::from_utf8_lossy(&raw);
    Some(s.replace('\0', " ").trim().to_string())
}

/// The parent pid from `/proc/PID/stat` (the field after the parenthesised command).
pub fn parent_pid(pid: Pid) -> Option<Pid> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ppid(&stat)
}

pub fn parse_stat_ppid(stat: &str) -> Option<Pid> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ppid() {
        assert_eq!(parse_stat_ppid("123 (post gres) S 77 123 ..."), Some(77));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }
}
