//! Lines as Telegraf's InfluxDB output writes them.

use vega_core::FieldValue;

use super::{field_keys, one, parse_ns, tags};

const T: i64 = 1_700_000_000_000_000_000;

#[test]
fn cpu() {
    let p = one("cpu,cpu=cpu0,host=h usage_idle=98.1,usage_user=1.2 1700000000000000000");
    assert_eq!(p.measurement, "cpu");
    assert_eq!(p.point.tags, tags(&[("cpu", "cpu0"), ("host", "h")]));
    assert_eq!(
        p.point.fields,
        vec![
            ("usage_idle".to_string(), FieldValue::Float(98.1)),
            ("usage_user".to_string(), FieldValue::Float(1.2)),
        ]
    );
    assert_eq!(p.point.time_ns, T);
}

#[test]
fn cpu_total_with_long_floats_and_zeros() {
    let p = one(
        "cpu,cpu=cpu-total,host=web01 usage_guest=0,usage_guest_nice=0,\
         usage_idle=97.23618090452261,usage_iowait=0.05025125628140704,usage_irq=0,\
         usage_nice=0,usage_softirq=0.05025125628140704,usage_steal=0,\
         usage_system=0.8040201005025126,usage_user=1.8592964824120604 1700000000000000000",
    );
    assert_eq!(p.point.fields.len(), 10);
    assert_eq!(p.point.fields[0].1, FieldValue::Float(0.0));
    assert_eq!(p.point.fields[2].1, FieldValue::Float(97.23618090452261));
}

#[test]
fn disk_with_the_root_path_as_a_tag() {
    let p = one(
        "disk,device=sda1,fstype=ext4,host=h,mode=rw,path=/ free=1i,used_percent=42.5 \
         1700000000000000000",
    );
    assert_eq!(
        p.point.tags,
        tags(&[
            ("device", "sda1"),
            ("fstype", "ext4"),
            ("host", "h"),
            ("mode", "rw"),
            ("path", "/"),
        ])
    );
    assert_eq!(p.point.fields[0].1, FieldValue::Integer(1));
    assert_eq!(p.point.fields[1].1, FieldValue::Float(42.5));
}

#[test]
fn system_uptime_format_is_a_string_with_comma_and_spaces() {
    let p = one(r#"system,host=h uptime_format="1 day,  2:03" 1700000000000000000"#);
    assert_eq!(
        p.point.fields,
        vec![(
            "uptime_format".to_string(),
            FieldValue::String("1 day,  2:03".into())
        )]
    );
}

#[test]
fn procstat_cmdline_string_among_other_types() {
    let p = one(
        r#"procstat,host=web01,process_name=telegraf,user=telegraf cmdline="/usr/bin/telegraf -config /etc/telegraf/telegraf.conf",cpu_usage=0.1,memory_rss=52822016i,running=true 1700000000000000000"#,
    );
    assert_eq!(
        p.point.fields[0].1,
        FieldValue::String("/usr/bin/telegraf -config /etc/telegraf/telegraf.conf".into())
    );
    assert_eq!(
        field_keys(&p),
        vec!["cmdline", "cpu_usage", "memory_rss", "running"]
    );
    assert_eq!(p.point.fields[3].1, FieldValue::Boolean(true));
}

#[test]
fn docker_container_name_with_an_escaped_space() {
    let p = one(
        r"docker_container_status,container_image=nginx,container_name=my\ web,host=web01 exitcode=0i,oomkilled=false 1700000000000000000",
    );
    assert_eq!(
        p.point.tags[1],
        ("container_name".to_string(), "my web".to_string())
    );
    assert_eq!(p.point.fields[1].1, FieldValue::Boolean(false));
}

#[test]
fn net_counters_as_unsigned_integers() {
    // With `influx_uint_support = true` Telegraf writes counters with `u`.
    let p = one(
        "net,host=web01,interface=eth0 bytes_recv=3054541u,bytes_sent=1120543u 1700000000000000000",
    );
    assert_eq!(p.point.fields[0].1, FieldValue::UInteger(3_054_541));
}

#[test]
fn windows_instance_tag_with_a_colon() {
    let p = one(
        "win_disk,host=WIN01,instance=C:,objectname=LogicalDisk Percent_Free_Space=73.5 \
         1700000000000000000",
    );
    assert_eq!(p.point.tags[1], ("instance".to_string(), "C:".to_string()));
}

#[test]
fn a_newline_escaped_by_telegraf_stays_a_literal_backslash_n() {
    // Telegraf writes a newline in a string as `\n`; like InfluxDB, the two
    // characters are kept as they are.
    let p = one(r#"syslog,host=h message="first\nsecond" 1700000000000000000"#);
    assert_eq!(
        p.point.fields[0].1,
        FieldValue::String(r"first\nsecond".into())
    );
}

#[test]
fn a_whole_telegraf_batch() {
    let body = "\
cpu,cpu=cpu0,host=web01 usage_idle=98.1,usage_user=1.2 1700000000000000000
mem,host=web01 active=2435567616i,available_percent=72.6,total=8283586560i,used_percent=21.7 1700000000000000000
system,host=web01 load1=0.09,load15=0.05,load5=0.08,n_cpus=4i,n_users=1i 1700000000000000000
system,host=web01 uptime=93723i 1700000000000000000
system,host=web01 uptime_format=\"1 day,  2:03\" 1700000000000000000
net,host=web01,interface=eth0 bytes_recv=3054541i,bytes_sent=1120543i,drop_in=0i 1700000000000000000
internal_write,host=web01,output=influxdb,version=1.28.5 buffer_limit=10000i,errors=0i 1700000000000000000
";
    let parsed = parse_ns(body);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let measurements: Vec<&str> = parsed
        .points
        .iter()
        .map(|p| p.measurement.as_str())
        .collect();
    assert_eq!(
        measurements,
        vec![
            "cpu",
            "mem",
            "system",
            "system",
            "system",
            "net",
            "internal_write"
        ]
    );
    assert!(parsed.points.iter().all(|p| p.point.time_ns == T));
}
