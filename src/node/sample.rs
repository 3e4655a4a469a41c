//! Reading domain activity counters from libvirt.
//!
//! The bulk API (virConnectGetAllDomainStats, libvirt 1.2.8) reads every
//! running domain's interface and block counters in one call. It is looked up
//! at run time with dlsym, not linked, so the same node binary loads on
//! CentOS 6's libvirt 0.10.2, where the per-domain calls of the original API
//! (virDomainInterfaceStats, virDomainBlockStats, with device names from the
//! domain XML) give the same numbers. Where libvirt has it (4.5), the bulk
//! call gets the NOWAIT flag, so a domain stuck in a long monitor job is
//! skipped instead of stalling the whole sample.

use std::collections::BTreeMap;
use std::ffi::{c_int, c_uint, c_void, CStr};

use virt::connect::Connect;
use virt::sys;

use super::libvirt::{domain_id, domain_state, lent_domain};
use crate::protocol::DomainId;

/// One domain's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub domain: DomainId,
    /// libvirt's runtime domain id: a new one every time the domain starts,
    /// so a restart between two samples is visible even if its counters
    /// already grew past the old values.
    pub run_id: u32,
    pub running: bool,
    /// Packets sent by the guest, per interface (`net.N.tx.pkts`).
    pub tx_pkts: BTreeMap<String, u64>,
    /// Write requests, per disk (`block.N.wr.reqs`).
    pub wr_reqs: BTreeMap<String, u64>,
}

/// Which libvirt API reads the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// virConnectGetAllDomainStats (with NOWAIT when available).
    Bulk { nowait: bool },
    /// Per-domain calls, for libvirt older than 1.2.8.
    Legacy,
}

/// The libvirt version (major × 1,000,000 + minor × 1,000 + micro) whose
/// bulk stats call takes VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT: 4.5.0.
const NOWAIT_SINCE: u32 = 4_005_000;
/// What virDomainGetID gives for a domain that is not running: (unsigned)-1.
const NO_RUN_ID: u32 = u32::MAX;
/// virDomainGetXMLDesc flags for the plain, non-secure description.
const XML_PLAIN: sys::virDomainXMLFlags = 0;

type GetAllDomainStats = unsafe extern "C" fn(
    sys::virConnectPtr,
    c_uint,
    *mut *mut sys::virDomainStatsRecordPtr,
    c_uint,
) -> c_int;
type StatsRecordListFree = unsafe extern "C" fn(*mut sys::virDomainStatsRecordPtr);

fn lookup<T>(name: &CStr) -> Option<T> {
    // SAFETY: dlsym with RTLD_DEFAULT searches the libraries already loaded
    // (libvirt.so.0 is linked); `name` is NUL-terminated.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: only used with `T` = the function-pointer type of that symbol,
    // as declared in libvirt's headers; sizes of fn pointers and *mut c_void
    // are equal on every platform libvirt runs on.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// Picks the best API this libvirt offers (`wanted` may force legacy).
pub fn choose(conn: &Connect, force_legacy: bool) -> Api {
    let has_bulk = lookup::<GetAllDomainStats>(c"virConnectGetAllDomainStats").is_some()
        && lookup::<StatsRecordListFree>(c"virDomainStatsRecordListFree").is_some();
    if force_legacy || !has_bulk {
        return Api::Legacy;
    }
    let version = conn.lib_version().unwrap_or(0);
    Api::Bulk {
        nowait: version >= NOWAIT_SINCE,
    }
}

/// Reads every active domain's counters.
pub fn read(conn: &Connect, api: Api) -> Result<Vec<Reading>, String> {
    match api {
        Api::Bulk { nowait } => read_bulk(conn, nowait),
        Api::Legacy => read_legacy(conn),
    }
}

fn read_bulk(conn: &Connect, nowait: bool) -> Result<Vec<Reading>, String> {
    let get = lookup::<GetAllDomainStats>(c"virConnectGetAllDomainStats")
        .ok_or("bulk stats API vanished")?;
    let free = lookup::<StatsRecordListFree>(c"virDomainStatsRecordListFree")
        .ok_or("bulk stats API vanished")?;
    let groups =
        sys::VIR_DOMAIN_STATS_STATE | sys::VIR_DOMAIN_STATS_INTERFACE | sys::VIR_DOMAIN_STATS_BLOCK;
    let mut flags = sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE;
    if nowait {
        flags |= sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT;
    }
    let mut records: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
    // SAFETY: valid connection; `records` receives a NULL-terminated array
    // that we free with virDomainStatsRecordListFree below.
    let n = unsafe { get(conn.as_ptr(), groups, &mut records, flags) };
    if n < 0 {
        return Err(format!(
            "virConnectGetAllDomainStats failed: {}",
            virt::error::Error::last_error()
        ));
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: libvirt returned `n` valid record pointers.
        let rec = unsafe { &**records.add(i) };
        // SAFETY: the record's domain is valid until the list is freed below,
        // and the list keeps its reference; the view is gone before that.
        let dom = unsafe { lent_domain(rec.dom) };
        let Some(domain) = domain_id(&dom) else {
            continue;
        };
        let run_id = dom.id().unwrap_or(NO_RUN_ID);
        // SAFETY: `params` holds `nparams` initialised entries.
        let params = unsafe { std::slice::from_raw_parts(rec.params, rec.nparams.max(0) as usize) };
        out.push(parse_params(domain, run_id, params));
    }
    // SAFETY: frees exactly what `get` allocated, once.
    unsafe { free(records) };
    Ok(out)
}

/// A typed parameter's value as u64, for the integer types.
fn param_u64(p: &sys::virTypedParameter) -> Option<u64> {
    // SAFETY: the union member read is the one `type_` says is set.
    unsafe {
        match p.type_ as c_uint {
            sys::VIR_TYPED_PARAM_INT => u64::try_from(p.value.i).ok(),
            sys::VIR_TYPED_PARAM_UINT => Some(u64::from(p.value.ui)),
            sys::VIR_TYPED_PARAM_LLONG => u64::try_from(p.value.l).ok(),
            sys::VIR_TYPED_PARAM_ULLONG => Some(p.value.ul),
            _ => None,
        }
    }
}

fn param_str(p: &sys::virTypedParameter) -> Option<String> {
    if p.type_ as c_uint != sys::VIR_TYPED_PARAM_STRING {
        return None;
    }
    // SAFETY: for STRING parameters `s` is a NUL-terminated string owned by
    // the record.
    let s = unsafe { p.value.s };
    // SAFETY: non-null checked; valid until the record list is freed.
    (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// Turns `state.state`, `net.N.name`, `net.N.tx.pkts`, `block.N.name`,
/// `block.N.wr.reqs` into a reading.
fn parse_params(domain: DomainId, run_id: u32, params: &[sys::virTypedParameter]) -> Reading {
    let mut names: BTreeMap<(bool, String), String> = BTreeMap::new();
    let mut tx: BTreeMap<String, u64> = BTreeMap::new();
    let mut wr: BTreeMap<String, u64> = BTreeMap::new();
    let mut running = false;
    for p in params {
        // SAFETY: `field` is a NUL-terminated C string within its array.
        let field = unsafe { CStr::from_ptr(p.field.as_ptr()) }.to_string_lossy();
        let parts: Vec<&str> = field.split('.').collect();
        match parts.as_slice() {
            ["state", "state"] => {
                running = param_u64(p) == Some(u64::from(sys::VIR_DOMAIN_RUNNING))
            }
            [group @ ("net" | "block"), idx, "name"] => {
                if let Some(n) = param_str(p) {
                    names.insert((*group == "net", idx.to_string()), n);
                }
            }
            ["net", idx, "tx", "pkts"] => {
                if let Some(v) = param_u64(p) {
                    tx.insert(idx.to_string(), v);
                }
            }
            ["block", idx, "wr", "reqs"] => {
                if let Some(v) = param_u64(p) {
                    wr.insert(idx.to_string(), v);
                }
            }
            _ => {}
        }
    }
    let rename = |net: bool, m: BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        m.into_iter()
            .map(|(idx, v)| (names.get(&(net, idx.clone())).cloned().unwrap_or(idx), v))
            .collect()
    };
    Reading {
        domain,
        run_id,
        running,
        tx_pkts: rename(true, tx),
        wr_reqs: rename(false, wr),
    }
}

/// `<target dev='NAME'/>` of every `<TAG ...> ... </TAG>` element in a
/// domain's XML: interfaces and disks. A full XML parser would be a new
/// dependency for two attributes of a document libvirt itself generated.
pub fn target_devs(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag} ");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start..];
        let end = body
            .find(&close)
            .map(|e| e + close.len())
            .unwrap_or(body.len());
        let element = &body[..end];
        if let Some(t) = element.find("<target ") {
            let target = &element[t..];
            for quote in ['\'', '"'] {
                let key = format!("dev={quote}");
                if let Some(d) = target.find(&key) {
                    let v = &target[d + key.len()..];
                    if let Some(q) = v.find(quote) {
                        out.push(v[..q].to_string());
                        break;
                    }
                }
            }
        }
        rest = &body[end..];
    }
    out
}

fn read_legacy(conn: &Connect) -> Result<Vec<Reading>, String> {
    let domains = conn
        .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        .map_err(|e| format!("cannot list domains: {e}"))?;
    let mut out = Vec::with_capacity(domains.len());
    for dom in &domains {
        let Some(domain) = domain_id(dom) else {
            continue;
        };
        let Some((state, _)) = domain_state(dom) else {
            continue;
        };
        let Ok(xml) = dom.xml_desc(XML_PLAIN) else {
            continue;
        };
        let mut tx = BTreeMap::new();
        for dev in target_devs(&xml, "interface") {
            if let Ok(st) = dom.interface_stats(&dev) {
                if st.tx_packets >= 0 {
                    tx.insert(dev, st.tx_packets as u64);
                }
            }
        }
        let mut wr = BTreeMap::new();
        for dev in target_devs(&xml, "disk") {
            if let Ok(st) = dom.block_stats(&dev) {
                if st.wr_req >= 0 {
                    wr.insert(dev, st.wr_req as u64);
                }
            }
        }
        out.push(Reading {
            domain,
            run_id: dom.id().unwrap_or(NO_RUN_ID),
            running: state == sys::VIR_DOMAIN_RUNNING as c_int,
            tx_pkts: tx,
            wr_reqs: wr,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_interface_and_disk_targets() {
        let xml = r#"<domain type='kvm'><devices>
            <disk type='file' device='disk'><source file='/a'/><target dev='vda' bus='virtio'/></disk>
            <disk type="file" device="cdrom"><target dev="hdc" bus="ide"/></disk>
            <interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='vnet3'/></interface>
            <interface type='user'><model type='virtio'/></interface>
            </devices></domain>"#;
        assert_eq!(target_devs(xml, "disk"), vec!["vda", "hdc"]);
        assert_eq!(target_devs(xml, "interface"), vec!["vnet3"]);
    }

    #[test]
    fn both_apis_agree_on_the_test_driver() {
        crate::node::libvirt::silence_default_errors();
        let conn = Connect::open(Some("test:///default")).unwrap();
        let legacy = read(&conn, Api::Legacy).unwrap();
        assert_eq!(legacy.len(), 1);
        assert!(legacy[0].running);
        if let Api::Bulk { nowait } = choose(&conn, false) {
            let bulk = read(&conn, Api::Bulk { nowait }).unwrap();
            assert_eq!(bulk.len(), 1);
            assert_eq!(bulk[0].domain, legacy[0].domain);
            assert_eq!(bulk[0].running, legacy[0].running);
        } else {
            panic!("this machine's libvirt has the bulk API");
        }
    }
}
