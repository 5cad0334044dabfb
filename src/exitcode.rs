//! Exit codes of the command-line tools.
//!
//! They follow OpenVZ's `vzctl(8)` numbering where OpenVZ had a code for the same failure, so
//! scripts written for vzctl keep working. `docs/exit-codes.md` lists them all.

/// An exit status with a fixed meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Ok = 0,
    /// A system call or helper failed in a way not covered by a more specific code.
    SystemError = 3,
    /// The container is locked by another command.
    Locked = 9,
    /// The host's global configuration file is missing or malformed.
    GlobalConfig = 10,
    /// Not run as root.
    Permission = 12,
    /// The container's configuration file is missing.
    NoConfig = 14,
    /// `chkpnt` failed.
    CheckpointFailed = 16,
    /// `restore` failed.
    RestoreFailed = 17,
    /// An unknown option, a missing argument, or an option the command does not take.
    BadOption = 20,
    /// An option's value is malformed (a CTID, an address, a hostname, a field name, ...).
    BadValue = 21,
    /// The container is not running but the command needs it running.
    NotRunning = 31,
    /// The container is running but the command needs it stopped.
    Running = 32,
    /// The container did not stop.
    StopFailed = 33,
    /// Setting up the container's network (addresses, interfaces) failed.
    NetFailed = 34,
    /// The container is not mounted.
    NotMounted = 40,
    /// The container is mounted but the command needs it unmounted.
    Mounted = 41,
    /// The container's private area is missing.
    NoPrivate = 43,
    /// The container (its configuration or private area) already exists.
    Exists = 44,
    /// The container's root file system has no usable init or shell.
    BadContainer = 47,
    /// Creating the private area failed.
    CreateFailed = 48,
    /// Mounting the container failed.
    MountFailed = 50,
    /// Unmounting the container failed.
    UmountFailed = 51,
    /// Destroying the container failed.
    DestroyFailed = 52,
    /// The OS template was not found.
    NoTemplate = 91,
    /// The IP address is already used by another container on this host.
    AddressInUse = 78,
    /// Starting the container failed.
    StartFailed = 133,
    /// A migration failed or was aborted (the container stays on the source).
    MigrateFailed = 110,
    /// Writing a configuration file failed.
    ConfigWrite = 139,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// `vzmigrate`'s exit statuses: OpenVZ vzmigrate's numbering where it had a code for the same
/// failure (docs/exit-codes.md). A failed migration leaves the container on the source in every
/// case but [`MigrateExit::InDoubt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[repr(u8)]
pub enum MigrateExit {
    Ok = 0,
    /// Bad usage: an unknown option, a missing argument, an unpinned peer.
    Usage = 1,
    /// The container is locked by another command.
    Locked = 3,
    /// The destination's agent could not be reached.
    CannotConnect = 4,
    /// The destination refused the plan, or the container cannot be migrated as asked.
    Refused = 5,
    /// Restoring on the destination failed.
    RestoreFailed = 7,
    /// Checkpointing (the final dump) on the source failed.
    DumpFailed = 8,
    /// A container with this CTID (or its private area) exists on the destination.
    ExistsThere = 9,
    /// No such container here.
    NoContainer = 10,
    /// One of its addresses is used by another container on the destination.
    AddressInUse = 12,
    /// The connection to the destination broke.
    ConnectionBroken = 21,
    /// The destination went silent (a deadline passed).
    PeerSilent = 22,
    /// Interrupted by a signal.
    Interrupted = 25,
    /// The two sides do not speak a common protocol, or one broke it.
    Protocol = 26,
    /// The destination ran out of disk space.
    NoSpace = 31,
    /// Any other failure or abort.
    Failed = 110,
    /// The commit was sent and the connection lost: where the container runs is not known yet.
    InDoubt = 111,
}

impl MigrateExit {
    pub fn code(self) -> u8 {
        self as u8
    }
}
