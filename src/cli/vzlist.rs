//! `vzlist`: list containers, OpenVZ's columns or JSON.

use anyhow::Result;
use clap::Parser;

use super::{parse, report, Global};
use crate::ctid::CtRef;
use crate::host::Host;
use crate::list::{self, Row};
use crate::runtime::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "vzlist",
    version,
    // -h is OpenVZ's hostname filter; help is --help alone.
    disable_help_flag = true,
    about = "List ferry containers",
    after_help = "Fields: ctid nproc status ip hostname name ostemplate private root layout onboot bootorder disabled description cpulimit cpuunits cpus nameserver uptime, and the beancounters kmemsize numproc physpages swappages numfile diskspace diskinodes cpuusage, with the suffixes .m (maxheld) .b (barrier) .l (limit) .f (failcnt), and .s/.h (soft/hard)"
)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    /// All containers (default: running ones)
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Only stopped containers
    #[arg(short = 'S', long = "stopped")]
    pub stopped: bool,
    /// No header line
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,
    /// Comma-separated fields to show
    #[arg(short = 'o', long = "output", value_name = "FIELD,...")]
    pub output: Option<String>,
    /// Sort by a field; -FIELD (or --sort=-FIELD) sorts descending
    #[arg(short = 's', long = "sort", value_name = "[-]FIELD", allow_hyphen_values = true)]
    pub sort: Option<String>,
    /// JSON output
    #[arg(short = 'j', long = "json")]
    pub json: bool,
    /// Only containers whose hostname matches a shell pattern
    #[arg(short = 'h', long = "hostname", value_name = "PATTERN")]
    pub hostname: Option<String>,
    /// Only containers whose description matches a shell pattern
    #[arg(short = 'd', long = "description", value_name = "PATTERN")]
    pub description: Option<String>,
    /// Only containers whose name matches a shell pattern
    #[arg(short = 'N', long = "name_filter", alias = "name-filter", value_name = "PATTERN")]
    pub name_filter: Option<String>,
    /// Show the NAME column instead of HOSTNAME
    #[arg(short = 'n', long = "name")]
    pub name: bool,
    /// Only the CTIDs, one per line, no header
    #[arg(short = '1')]
    pub ctid_only: bool,
    /// List the fields -o and -s take
    #[arg(short = 'L', long = "list")]
    pub list_fields: bool,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Only these containers (CTIDs or names)
    pub ctids: Vec<CtRef>,
}

pub fn main() -> ! {
    let args: Args = parse();
    super::init_logging(args.global.verbose);
    let code = match run(args) {
        Ok(()) => 0,
        Err(e) => report("vzlist", &e),
    };
    std::process::exit(code)
}

/// Does `text` match the shell pattern `pattern` (fnmatch(3))? Absent text matches nothing.
fn matches(pattern: &str, text: Option<&str>) -> bool {
    let (Ok(p), Some(Ok(t))) = (std::ffi::CString::new(pattern), text.map(std::ffi::CString::new)) else {
        return false;
    };
    // SAFETY: two NUL-terminated strings that live across the call.
    unsafe { libc::fnmatch(p.as_ptr(), t.as_ptr(), 0) == 0 }
}

pub fn run(args: Args) -> Result<()> {
    if args.list_fields {
        for f in list::FIELDS {
            println!("{:<16} {}", f.name, f.header);
        }
        return Ok(());
    }
    // Validate the field list and sort key before reading anything.
    let fields = match &args.output {
        Some(spec) => list::parse_fields(spec)?,
        None if args.ctid_only => list::parse_fields("ctid")?,
        None if args.json => list::FIELDS.iter().copied().filter(|f| f.name != "veid").collect(),
        None if args.name => list::parse_fields(&list::DEFAULT_FIELDS.join(",").replace("hostname", "name"))?,
        None => list::parse_fields(&list::DEFAULT_FIELDS.join(","))?,
    };
    let no_header = args.no_header || args.ctid_only;
    let sort = match &args.sort {
        Some(s) => {
            let (rev, name) = match s.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, s.as_str()),
            };
            Some((list::field(name)?, rev))
        }
        None => None,
    };
    let wants_uptime =
        fields.iter().any(|f| f.name == "uptime") || sort.as_ref().is_some_and(|(f, _)| f.name == "uptime");
    let wants_ubc = fields.iter().any(|f| f.is_resource()) || sort.as_ref().is_some_and(|(f, _)| f.is_resource());
    let host = Host::open_existing(args.global.layout())?;
    let rt = Runtime::new(host);
    let ids = if args.ctids.is_empty() {
        rt.host.ctids()?
    } else {
        args.ctids
            .iter()
            .map(|r| rt.host.resolve(r).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()?
    };
    // One reading of the mount table for every row.
    let mounts = crate::fsutil::MountPoints::read()?;
    let mut rows = Vec::new();
    for id in ids {
        let ct = rt.host.container(id)?;
        let st = rt.status_in(id, &mounts)?;
        let status = if st.running {
            "running"
        } else if st.mounted {
            "mounted"
        } else {
            "stopped"
        };
        let explicit = !args.ctids.is_empty();
        let wanted = if args.stopped {
            !st.running
        } else {
            explicit || args.all || st.running
        };
        let wanted = wanted
            && args.hostname.as_deref().is_none_or(|p| matches(p, ct.hostname()))
            && args.name_filter.as_deref().is_none_or(|p| matches(p, ct.name()))
            && args
                .description
                .as_deref()
                .is_none_or(|p| matches(p, ct.get("DESCRIPTION")));
        if !wanted {
            continue;
        }
        rows.push(Row {
            ctid: id,
            nproc: rt.nproc(id)?,
            status: status.to_string(),
            ip: ct.ip_addresses(),
            hostname: ct.hostname().map(str::to_string),
            name: ct.name().map(str::to_string),
            ostemplate: ct.get("OSTEMPLATE").map(str::to_string),
            private: ct
                .get("VE_PRIVATE")
                .map(|v| crate::config::expand_veid(v, id))
                .unwrap_or_else(|| ct.private.display().to_string()),
            root: ct
                .get("VE_ROOT")
                .map(|v| crate::config::expand_veid(v, id))
                .unwrap_or_else(|| ct.root.display().to_string()),
            layout: ct.get("VE_LAYOUT").map(str::to_string),
            onboot: crate::boot::yes(ct.get("ONBOOT")),
            disabled: crate::boot::yes(ct.get("DISABLED")),
            bootorder: crate::boot::bootorder(&ct),
            description: ct.get("DESCRIPTION").map(str::to_string),
            cpulimit: ct.get("CPULIMIT").map(str::to_string),
            cpuunits: ct.get("CPUUNITS").map(str::to_string),
            cpus: ct.get("CPUS").map(str::to_string),
            nameserver: ct.get("NAMESERVER").map(str::to_string),
            // The run state is read for this column alone, and only for running containers.
            uptime: match (wants_uptime, st.running) {
                (true, true) => rt
                    .run_state(id)?
                    .map(|s| crate::units::unix_now().saturating_sub(s.started_at)),
                _ => None,
            },
            ubc: if wants_ubc { rt.ubc(id)? } else { vec![] },
        });
    }
    if let Some((f, rev)) = sort {
        list::sort(&mut rows, &f, rev);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list::json(&rows, &fields))?);
    } else {
        if rows.is_empty() && !no_header && !args.global.quiet {
            eprintln!("Container(s) not found");
        }
        print!("{}", list::table(&rows, &fields, !no_header));
    }
    Ok(())
}
