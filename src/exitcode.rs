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
