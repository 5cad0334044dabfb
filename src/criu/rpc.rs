//! The subset of CRIU's RPC messages (its `images/rpc.proto`, proto2) that ferry uses, written
//! as prost messages. Field numbers are CRIU's; fields ferry does not use are left out, which
//! protobuf allows (unknown fields in responses are skipped).

#[derive(Clone, PartialEq, prost::Message)]
pub struct VethPair {
    #[prost(string, required, tag = "1")]
    pub if_in: String,
    #[prost(string, required, tag = "2")]
    pub if_out: String,
}

/// Where the restored tree's cgroups go (CRIU's `cgroup_root`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CgroupRoot {
    #[prost(string, optional, tag = "1")]
    pub ctrl: Option<String>,
    #[prost(string, required, tag = "2")]
    pub path: String,
}

/// Where a dump sends its pages instead of writing pages images (`criu_page_server_info`):
/// ferry only ever gives CRIU a connected socket (`fd`, swrk mode only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PageServerInfo {
    #[prost(int32, optional, tag = "4")]
    pub fd: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InheritFd {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(int32, required, tag = "2")]
    pub fd: i32,
}

/// CRIU's cgroup management modes (`criu_cg_mode`).
pub mod cg_mode {
    pub const SOFT: i32 = 3;
    pub const FULL: i32 = 4;
}

impl Opts {
    /// The same request as `criu` command-line options, for running CRIU by hand on what
    /// ferry would dump or restore. Left out: the images and work directories (given to the
    /// command as `-D`/`-W`) and `notify_scripts` (the command line notifies action scripts,
    /// which need `--action-script`, not the caller).
    pub fn cli_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut flag = |on: Option<bool>, name: &str| {
            if on == Some(true) {
                a.push(name.into());
            }
        };
        flag(self.leave_running, "--leave-running");
        flag(self.tcp_established, "--tcp-established");
        flag(self.tcp_skip_in_flight, "--skip-in-flight");
        flag(self.shell_job, "--shell-job");
        flag(self.file_locks, "--file-locks");
        flag(self.link_remap, "--link-remap");
        flag(self.track_mem, "--track-mem");
        flag(self.tcp_close, "--tcp-close");
        flag(self.leave_stopped, "--leave-stopped");
        flag(self.force_irmap, "--force-irmap");
        if let Some(g) = self.ghost_limit {
            a.push(format!("--ghost-limit={g}"));
        }
        if let Some(p) = self.pid {
            a.extend(["-t".into(), p.to_string()]);
        }
        if let Some(v) = self.log_level {
            a.push(format!("-v{v}"));
        }
        if let Some(f) = &self.log_file {
            a.extend(["-o".into(), f.clone()]);
        }
        if let Some(r) = &self.root {
            a.extend(["--root".into(), r.clone()]);
        }
        if let Some(p) = &self.parent_img {
            a.extend(["--prev-images-dir".into(), p.clone()]);
        }
        if self.manage_cgroups == Some(true) {
            let mode = match self.manage_cgroups_mode {
                Some(cg_mode::SOFT) => "=soft",
                Some(cg_mode::FULL) => "=full",
                _ => "",
            };
            a.push(format!("--manage-cgroups{mode}"));
        }
        for c in &self.cg_root {
            let root = match &c.ctrl {
                Some(ctrl) => format!("{ctrl}:{}", c.path),
                None => c.path.clone(),
            };
            a.extend(["--cgroup-root".into(), root]);
        }
        for v in &self.veths {
            a.extend(["--external".into(), format!("veth[{}]:{}", v.if_in, v.if_out)]);
        }
        for e in &self.external {
            a.extend(["--external".into(), e.clone()]);
        }
        for i in &self.inherit_fd {
            a.extend(["--inherit-fd".into(), format!("fd[{}]:{}", i.fd, i.key)]);
        }
        if let Some(d) = &self.freeze_cgroup {
            a.extend(["--freeze-cgroup".into(), d.clone()]);
        }
        if let Some(t) = self.timeout {
            a.extend(["--timeout".into(), t.to_string()]);
        }
        if let Some(fd) = self.ps.as_ref().and_then(|p| p.fd) {
            a.extend(["--page-server".into(), "--ps-socket".into(), fd.to_string()]);
        }
        a
    }
}

#[cfg(test)]
mod cli_tests {
    use super::*;

    #[test]
    fn a_request_reads_as_the_command_line_that_asks_the_same() {
        let o = Opts {
            pid: Some(42),
            root: Some("/vz/root/101".into()),
            tcp_established: Some(true),
            leave_running: Some(false),
            manage_cgroups: Some(true),
            manage_cgroups_mode: Some(cg_mode::SOFT),
            cg_root: vec![CgroupRoot {
                ctrl: None,
                path: "/ferry/101".into(),
            }],
            veths: vec![VethPair {
                if_in: "venet0".into(),
                if_out: "venet101".into(),
            }],
            external: vec!["tty[8800:5]".into()],
            inherit_fd: vec![InheritFd {
                key: "tty[8800:5]".into(),
                fd: 3,
            }],
            freeze_cgroup: Some("/sys/fs/cgroup/freezer/ferry/101".into()),
            notify_scripts: Some(true),
            ..Default::default()
        };
        assert_eq!(
            o.cli_args().join(" "),
            "--tcp-established -t 42 --root /vz/root/101 --manage-cgroups=soft --cgroup-root /ferry/101 \
             --external veth[venet0]:venet101 --external tty[8800:5] --inherit-fd fd[3]:tty[8800:5] \
             --freeze-cgroup /sys/fs/cgroup/freezer/ferry/101"
        );
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Opts {
    #[prost(int32, required, tag = "1")]
    pub images_dir_fd: i32,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
    #[prost(bool, optional, tag = "3")]
    pub leave_running: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub tcp_established: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub shell_job: Option<bool>,
    #[prost(bool, optional, tag = "8")]
    pub file_locks: Option<bool>,
    #[prost(int32, optional, tag = "9")]
    pub log_level: Option<i32>,
    #[prost(string, optional, tag = "10")]
    pub log_file: Option<String>,
    /// Dump: send the pages to a page server (see `criu::page_server`).
    #[prost(message, optional, tag = "11")]
    pub ps: Option<PageServerInfo>,
    #[prost(bool, optional, tag = "12")]
    pub notify_scripts: Option<bool>,
    #[prost(string, optional, tag = "13")]
    pub root: Option<String>,
    #[prost(string, optional, tag = "14")]
    pub parent_img: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub track_mem: Option<bool>,
    #[prost(int32, optional, tag = "17")]
    pub work_dir_fd: Option<i32>,
    /// Dump: a file a process holds open whose name was removed while it has other links gets
    /// a hard link (`link_remap.N` beside it) for the restore to open it by.
    #[prost(bool, optional, tag = "18")]
    pub link_remap: Option<bool>,
    #[prost(message, repeated, tag = "19")]
    pub veths: Vec<VethPair>,
    /// Dump: an inotify watch whose file CRIU cannot find by its handle's path (a watch on a
    /// symbolic link itself, as systemd's on /etc/localtime) is looked up by scanning
    /// directories, instead of being recorded as a handle alone.
    #[prost(bool, optional, tag = "21")]
    pub force_irmap: Option<bool>,
    #[prost(bool, optional, tag = "24")]
    pub manage_cgroups: Option<bool>,
    #[prost(message, repeated, tag = "25")]
    pub cg_root: Vec<CgroupRoot>,
    #[prost(message, repeated, tag = "27")]
    pub inherit_fd: Vec<InheritFd>,
    #[prost(int32, optional, tag = "34")]
    pub manage_cgroups_mode: Option<i32>,
    /// Dump: the largest deleted-but-open file kept in the images (bytes; CRIU's default 1 MiB).
    #[prost(uint32, optional, tag = "35")]
    pub ghost_limit: Option<u32>,
    #[prost(string, repeated, tag = "37")]
    pub external: Vec<String>,
    #[prost(string, optional, tag = "44")]
    pub freeze_cgroup: Option<String>,
    #[prost(uint32, optional, tag = "45")]
    pub timeout: Option<u32>,
    /// Connections still being set up on a listening socket (SYN received, not yet accepted)
    /// are left out of the dump instead of failing it.
    #[prost(bool, optional, tag = "46")]
    pub tcp_skip_in_flight: Option<bool>,
    #[prost(bool, optional, tag = "52")]
    pub tcp_close: Option<bool>,
    /// Restore: leave the tasks stopped (SIGSTOP) instead of resuming them.
    #[prost(bool, optional, tag = "69")]
    pub leave_stopped: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RestoreResp {
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Notify {
    #[prost(string, optional, tag = "1")]
    pub script: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
}

/// `criu_req_type`.
pub mod req_type {
    pub const DUMP: i32 = 1;
    pub const RESTORE: i32 = 2;
    pub const CHECK: i32 = 3;
    pub const NOTIFY: i32 = 6;
    pub const CPUINFO_DUMP: i32 = 7;
    pub const CPUINFO_CHECK: i32 = 8;
    pub const FEATURE_CHECK: i32 = 9;
    pub const VERSION: i32 = 10;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Features {
    #[prost(bool, optional, tag = "1")]
    pub mem_track: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub lazy_pages: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Req {
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub opts: Option<Opts>,
    #[prost(bool, optional, tag = "3")]
    pub notify_success: Option<bool>,
    #[prost(message, optional, tag = "5")]
    pub features: Option<Features>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Version {
    #[prost(int32, required, tag = "1")]
    pub major_number: i32,
    #[prost(int32, required, tag = "2")]
    pub minor_number: i32,
    #[prost(string, optional, tag = "3")]
    pub gitid: Option<String>,
    #[prost(int32, optional, tag = "4")]
    pub sublevel: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Resp {
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    #[prost(message, optional, tag = "4")]
    pub restore: Option<RestoreResp>,
    #[prost(message, optional, tag = "5")]
    pub notify: Option<Notify>,
    #[prost(int32, optional, tag = "7")]
    pub cr_errno: Option<i32>,
    #[prost(message, optional, tag = "8")]
    pub features: Option<Features>,
    #[prost(string, optional, tag = "9")]
    pub cr_errmsg: Option<String>,
    #[prost(message, optional, tag = "10")]
    pub version: Option<Version>,
}
