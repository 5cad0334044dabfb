//! `vzlist`: rows of container facts, formatted as OpenVZ's columns or as JSON.

use std::cmp::Ordering;

use serde_json::{json, Value};

use crate::ctid::Ctid;

/// What vzlist knows about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub ctid: Ctid,
    pub nproc: Option<usize>,
    /// running, stopped or mounted (OpenVZ's values).
    pub status: String,
    pub ip: Vec<String>,
    pub hostname: Option<String>,
    pub name: Option<String>,
    pub ostemplate: Option<String>,
    pub private: String,
    pub root: String,
    pub layout: Option<String>,
    /// ONBOOT="yes"; DISABLED="yes"; BOOTORDER; DESCRIPTION (crate::boot).
    pub onboot: bool,
    pub disabled: bool,
    pub bootorder: Option<u64>,
    pub description: Option<String>,
    /// CPULIMIT, CPUUNITS, CPUS, NAMESERVER as configured.
    pub cpulimit: Option<String>,
    pub cpuunits: Option<String>,
    pub cpus: Option<String>,
    pub nameserver: Option<String>,
    /// Seconds since it started (or was restored here); running containers, when asked for.
    pub uptime: Option<u64>,
    /// Beancounters, filled only when a resource field is asked for.
    pub ubc: Vec<crate::resources::UbcRow>,
}

/// A column: its name for `-o`/`-s`, its header, and whether it is right-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub header: &'static str,
    width: usize,
    right: bool,
    /// For resource fields: which value of the beancounter.
    ubc: Option<UbcPart>,
}

/// Which beancounter value a resource field shows: OpenVZ's suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UbcPart {
    Held,
    Maxheld,
    Barrier,
    Limit,
    Failcnt,
}

pub const FIELDS: &[Field] = &[
    Field {
        name: "ctid",
        header: "CTID",
        width: 10,
        right: true,
        ubc: None,
    },
    Field {
        name: "veid",
        header: "CTID",
        width: 10,
        right: true,
        ubc: None,
    },
    Field {
        name: "nproc",
        header: "NPROC",
        width: 10,
        right: true,
        ubc: None,
    },
    Field {
        name: "status",
        header: "STATUS",
        width: 9,
        right: false,
        ubc: None,
    },
    Field {
        name: "ip",
        header: "IP_ADDR",
        width: 15,
        right: false,
        ubc: None,
    },
    Field {
        name: "hostname",
        header: "HOSTNAME",
        width: 20,
        right: false,
        ubc: None,
    },
    Field {
        name: "name",
        header: "NAME",
        width: 12,
        right: false,
        ubc: None,
    },
    Field {
        name: "ostemplate",
        header: "OSTEMPLATE",
        width: 16,
        right: false,
        ubc: None,
    },
    Field {
        name: "private",
        header: "PRIVATE",
        width: 24,
        right: false,
        ubc: None,
    },
    Field {
        name: "root",
        header: "ROOT",
        width: 24,
        right: false,
        ubc: None,
    },
    Field {
        name: "layout",
        header: "LAYOUT",
        width: 6,
        right: false,
        ubc: None,
    },
    Field {
        name: "onboot",
        header: "ONBOOT",
        width: 6,
        right: false,
        ubc: None,
    },
    Field {
        name: "bootorder",
        header: "BOOTORDER",
        width: 9,
        right: true,
        ubc: None,
    },
    Field {
        name: "disabled",
        header: "DISABL",
        width: 6,
        right: false,
        ubc: None,
    },
    Field {
        name: "description",
        header: "DESCRIPTION",
        width: 24,
        right: false,
        ubc: None,
    },
    Field {
        name: "cpulimit",
        header: "CPULIM",
        width: 6,
        right: true,
        ubc: None,
    },
    Field {
        name: "cpuunits",
        header: "CPUUNI",
        width: 6,
        right: true,
        ubc: None,
    },
    Field {
        name: "cpus",
        header: "CPUS",
        width: 4,
        right: true,
        ubc: None,
    },
    Field {
        name: "nameserver",
        header: "NAMESERVER",
        width: 15,
        right: false,
        ubc: None,
    },
    Field {
        name: "uptime",
        header: "UPTIME",
        width: 12,
        right: true,
        ubc: None,
    },
];

/// OpenVZ's default columns.
pub const DEFAULT_FIELDS: &[&str] = &["ctid", "nproc", "status", "ip", "hostname"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown field {0:?}; known fields: {known}", known = FIELDS.iter().map(|f| f.name).collect::<Vec<_>>().join(", "))]
pub struct UnknownField(pub String);

pub fn field(name: &str) -> Result<Field, UnknownField> {
    if let Some(f) = FIELDS.iter().copied().find(|f| f.name == name) {
        return Ok(f);
    }
    // Beancounters: RESOURCE (held), .m (maxheld), .b (barrier), .l (limit), .f (failcnt);
    // .s and .h (soft, hard) as OpenVZ wrote them for disk space and inodes.
    let (res, part) = match name.split_once('.') {
        None => (name, UbcPart::Held),
        Some((r, "m")) => (r, UbcPart::Maxheld),
        Some((r, "b" | "s")) => (r, UbcPart::Barrier),
        Some((r, "l" | "h")) => (r, UbcPart::Limit),
        Some((r, "f")) => (r, UbcPart::Failcnt),
        _ => return Err(UnknownField(name.to_string())),
    };
    if !crate::resources::UBC_RESOURCES.contains(&res) {
        return Err(UnknownField(name.to_string()));
    }
    // A handful of fields per run, living as long as the program: leaking them is simpler than
    // giving every field an owned name.
    let name: &'static str = Box::leak(name.to_string().into_boxed_str());
    // OpenVZ's short headers: NPROC.M, PHYSP, DSPACE.H, ...
    let short = match res {
        "numproc" => "NPROC",
        "physpages" => "PHYSP",
        "swappages" => "SWAPP",
        "numfile" => "NFILE",
        "diskspace" => "DSPACE",
        "diskinodes" => "DINODES",
        r => r,
    };
    let header = match name.split_once('.') {
        Some((_, suffix)) => format!("{}.{}", short.to_uppercase(), suffix.to_uppercase()),
        None => short.to_uppercase(),
    };
    let header: &'static str = Box::leak(header.into_boxed_str());
    Ok(Field {
        name,
        header,
        width: 12,
        right: true,
        ubc: Some(part),
    })
}

impl Field {
    pub fn is_resource(&self) -> bool {
        self.ubc.is_some()
    }
}

fn ubc_value(row: &Row, f: &Field) -> Option<u64> {
    let part = f.ubc?;
    let res = f.name.split('.').next()?;
    let r = row.ubc.iter().find(|r| r.resource == res)?;
    match part {
        UbcPart::Held => r.held,
        UbcPart::Maxheld => r.maxheld,
        UbcPart::Barrier => r.barrier,
        UbcPart::Limit => r.limit,
        UbcPart::Failcnt => r.failcnt,
    }
}

/// Parses `-o ctid,name,...`.
pub fn parse_fields(spec: &str) -> Result<Vec<Field>, UnknownField> {
    spec.split(',').map(|s| field(s.trim())).collect()
}

fn text(row: &Row, f: &Field) -> String {
    if f.ubc.is_some() {
        return crate::resources::ubc_value(ubc_value(row, f));
    }
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    match f.name {
        "ctid" | "veid" => row.ctid.to_string(),
        "nproc" => row.nproc.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        "status" => row.status.clone(),
        "ip" => {
            if row.ip.is_empty() {
                "-".into()
            } else {
                row.ip.join(" ")
            }
        }
        "hostname" => opt(&row.hostname),
        "name" => opt(&row.name),
        "ostemplate" => opt(&row.ostemplate),
        "private" => row.private.clone(),
        "root" => row.root.clone(),
        "layout" => opt(&row.layout),
        "onboot" => yes_no(row.onboot),
        "disabled" => yes_no(row.disabled),
        "bootorder" => row.bootorder.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        "description" => opt(&row.description),
        "cpulimit" => opt(&row.cpulimit),
        "cpuunits" => opt(&row.cpuunits),
        "cpus" => opt(&row.cpus),
        "nameserver" => opt(&row.nameserver),
        "uptime" => row.uptime.map(uptime).unwrap_or_else(|| "-".into()),
        _ => "-".into(),
    }
}

/// Seconds as `HH:MM:SS`, with `Nd ` in front past a day.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn value(row: &Row, f: &Field) -> Value {
    if f.ubc.is_some() {
        return json!(ubc_value(row, f));
    }
    match f.name {
        "ctid" | "veid" => json!(row.ctid.get()),
        "nproc" => json!(row.nproc),
        "ip" => json!(row.ip),
        "hostname" => json!(row.hostname),
        "name" => json!(row.name),
        "ostemplate" => json!(row.ostemplate),
        "layout" => json!(row.layout),
        "onboot" => json!(row.onboot),
        "disabled" => json!(row.disabled),
        "bootorder" => json!(row.bootorder),
        "description" => json!(row.description),
        "cpulimit" => json!(row.cpulimit),
        "cpuunits" => json!(row.cpuunits),
        "cpus" => json!(row.cpus),
        "nameserver" => json!(row.nameserver),
        "uptime" => json!(row.uptime),
        _ => json!(text(row, f)),
    }
}

/// Sorts rows by a field; `reverse` for descending. Numbers sort as numbers.
pub fn sort(rows: &mut [Row], f: &Field, reverse: bool) {
    rows.sort_by(|a, b| {
        let o = match f.name {
            "ctid" | "veid" => a.ctid.cmp(&b.ctid),
            "nproc" => a.nproc.cmp(&b.nproc),
            "bootorder" => a.bootorder.cmp(&b.bootorder),
            "uptime" => a.uptime.cmp(&b.uptime),
            _ if f.ubc.is_some() => ubc_value(a, f).cmp(&ubc_value(b, f)),
            _ => text(a, f).cmp(&text(b, f)),
        }
        .then(a.ctid.cmp(&b.ctid));
        if reverse {
            o.reverse()
        } else {
            o
        }
    });
    let _ = Ordering::Equal;
}

/// The table, as OpenVZ prints it: fixed-width columns, the last one unpadded.
pub fn table(rows: &[Row], fields: &[Field], header: bool) -> String {
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, (f, c)) in fields.iter().zip(cells).enumerate() {
            let last = i + 1 == fields.len();
            if i > 0 {
                l.push(' ');
            }
            if f.right {
                l.push_str(&format!("{c:>w$}", w = f.width));
            } else if last {
                l.push_str(&c);
            } else {
                l.push_str(&format!("{c:<w$}", w = f.width));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    if header {
        line(fields.iter().map(|f| f.header.to_string()).collect());
    }
    for r in rows {
        line(fields.iter().map(|f| text(r, f)).collect());
    }
    out
}

/// A JSON array of objects keyed by field name.
pub fn json(rows: &[Row], fields: &[Field]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| Value::Object(fields.iter().map(|f| (f.name.to_string(), value(r, f))).collect()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u32, nproc: Option<usize>, status: &str, host: Option<&str>) -> Row {
        Row {
            ctid: Ctid::new(id).unwrap(),
            nproc,
            status: status.into(),
            ip: if id == 101 {
                vec!["198.18.0.10".into(), "2001:db8::1".into()]
            } else {
                vec![]
            },
            hostname: host.map(str::to_string),
            name: (id == 101).then(|| "web".to_string()),
            ostemplate: Some("busybox".into()),
            private: format!("/vz/private/{id}"),
            root: format!("/vz/root/{id}"),
            layout: Some("simfs".into()),
            onboot: id == 101,
            disabled: false,
            bootorder: (id == 101).then_some(50),
            description: (id == 101).then(|| "the web site".to_string()),
            cpulimit: (id == 101).then(|| "50".to_string()),
            cpuunits: None,
            cpus: None,
            nameserver: (id == 101).then(|| "198.18.0.53 198.18.0.54".to_string()),
            uptime: (id == 101).then_some(93784),
            ubc: vec![crate::resources::UbcRow {
                resource: "numproc",
                held: Some(id as u64 - 100),
                maxheld: Some(7),
                barrier: Some(64),
                limit: Some(64),
                failcnt: Some(0),
            }],
        }
    }

    #[test]
    fn default_table_matches_openvz_layout() {
        let rows = vec![
            row(101, Some(3), "running", Some("ct101")),
            row(20000, None, "stopped", None),
        ];
        let fields = parse_fields(&DEFAULT_FIELDS.join(",")).unwrap();
        let t = table(&rows, &fields, true);
        let expected = concat!(
            "      CTID      NPROC STATUS    IP_ADDR         HOSTNAME\n",
            "       101          3 running   198.18.0.10 2001:db8::1 ct101\n",
            "     20000          - stopped   -               -\n",
        );
        assert_eq!(t, expected);
        let no_header = table(&rows, &fields, false);
        assert_eq!(no_header.lines().count(), 2);
    }

    #[test]
    fn fields_and_sorting() {
        assert!(matches!(parse_fields("ctid,bogus"), Err(UnknownField(f)) if f == "bogus"));
        let mut rows = vec![
            row(102, Some(1), "running", Some("b")),
            row(101, Some(9), "running", Some("a")),
            row(103, None, "stopped", Some("c")),
        ];
        sort(&mut rows, &field("nproc").unwrap(), true);
        assert_eq!(
            rows.iter().map(|r| r.ctid.get()).collect::<Vec<_>>(),
            vec![101, 102, 103]
        );
        sort(&mut rows, &field("hostname").unwrap(), false);
        assert_eq!(rows[0].ctid.get(), 101);
        let t = table(
            &rows[..1],
            &parse_fields("ctid,name,ostemplate,private,root").unwrap(),
            false,
        );
        assert_eq!(
            t,
            "       101 web          busybox          /vz/private/101          /vz/root/101\n"
        );
    }

    #[test]
    fn resource_fields() {
        let rows = vec![row(101, Some(3), "running", None), row(102, Some(1), "running", None)];
        let f = parse_fields("ctid,numproc,numproc.m,numproc.l,numproc.f,physpages").unwrap();
        assert_eq!(
            table(&rows[..1], &f, false).split_whitespace().collect::<Vec<_>>(),
            vec!["101", "1", "7", "64", "0", "-"]
        );
        // OpenVZ's headers.
        assert!(table(&rows, &f, true).lines().next().unwrap().contains("NPROC.M"));
        assert_eq!(json(&rows[..1], &f)[0]["numproc.l"], json!(64));
        assert!(parse_fields("numproc.x").is_err() && parse_fields("bogus.m").is_err());
        let mut r = rows.clone();
        sort(&mut r, &field("numproc").unwrap(), true);
        assert_eq!(r[0].ctid.get(), 102);
    }

    #[test]
    fn json_form() {
        let rows = vec![
            row(101, Some(3), "running", Some("ct101")),
            row(102, None, "stopped", None),
        ];
        let v = json(&rows, &parse_fields("ctid,nproc,status,ip,hostname").unwrap());
        assert_eq!(v[0]["ctid"], json!(101));
        assert_eq!(v[0]["nproc"], json!(3));
        assert_eq!(v[0]["ip"], json!(["198.18.0.10", "2001:db8::1"]));
        assert_eq!(v[1]["nproc"], Value::Null);
        assert_eq!(v[1]["hostname"], Value::Null);
        assert_eq!(v[1]["status"], json!("stopped"));
    }

    /// The boot fields: booleans and a number in JSON (never "yes"/"no" strings), OpenVZ's
    /// yes/no and "-" in the table; bootorder sorts as a number.
    #[test]
    fn boot_fields() {
        let mut rows = vec![
            row(101, Some(3), "running", Some("ct101")),
            row(102, None, "stopped", None),
        ];
        rows[1].bootorder = Some(7);
        let f = parse_fields("ctid,onboot,bootorder,disabled,description").unwrap();
        let v = json(&rows, &f);
        assert_eq!(v[0]["onboot"], json!(true));
        assert_eq!(v[1]["onboot"], json!(false));
        assert_eq!(v[0]["bootorder"], json!(50));
        assert_eq!(v[0]["disabled"], json!(false));
        assert_eq!(v[0]["description"], json!("the web site"));
        assert_eq!(v[1]["description"], Value::Null);
        let t = table(&rows, &f, true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["CTID", "ONBOOT", "BOOTORDER", "DISABL", "DESCRIPTION"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["101", "yes", "50", "no", "the", "web", "site"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["102", "no", "7", "no", "-"]
        );
        sort(&mut rows, &field("bootorder").unwrap(), true);
        assert_eq!(rows[0].ctid.get(), 101);
    }

    #[test]
    fn configured_fields_uptime_and_openvz_headers() {
        let rows = vec![
            row(101, Some(3), "running", Some("ct101")),
            row(102, None, "stopped", None),
        ];
        let f = parse_fields("ctid,cpulimit,uptime,nameserver").unwrap();
        let t = table(&rows, &f, true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["CTID", "CPULIM", "UPTIME", "NAMESERVER"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["101", "50", "1d", "02:03:04", "198.18.0.53", "198.18.0.54"]
        );
        assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["102", "-", "-", "-"]);
        let v = json(&rows, &f);
        assert_eq!(v[0]["uptime"], json!(93784));
        assert_eq!(v[1]["uptime"], Value::Null);
        assert_eq!(v[0]["cpulimit"], json!("50"));
        assert_eq!(uptime(59), "00:00:59");
        let h = |n: &str| field(n).unwrap().header;
        assert_eq!(
            [
                h("numproc.m"),
                h("physpages"),
                h("diskspace.h"),
                h("diskinodes"),
                h("kmemsize.f")
            ],
            ["NPROC.M", "PHYSP", "DSPACE.H", "DINODES", "KMEMSIZE.F"]
        );
    }
}
