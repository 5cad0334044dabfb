//! Facts about host processes read from /proc.

use std::fs;

/// The start time of a process (field 22 of /proc/PID/stat, in clock ticks since boot), or
/// None if the process does not exist or is a zombie. With the pid it identifies a process
/// even after the pid has been reused.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state); field 22 is index 19.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Is the process with this pid and start time still alive (and not a zombie)?
pub fn is_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Does process `pid` run the program named `comm` (its /proc/PID/comm)? Tells a pid
/// recorded in a pid file or journal from the same pid reused by another program.
pub fn runs_as(pid: u32, comm: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let st = start_time(me).unwrap();
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1));
        assert_eq!(start_time(i32::MAX), None);
    }
}
