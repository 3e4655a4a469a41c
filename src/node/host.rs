//! Which libvirt host this node watches: the host UUID, read once at start.
//!
//! Every message header carries it (`host=`, docs/protocol.md), so the
//! master can tell a node re-added under another id (same host) from two
//! hosts configured with one `node_id` (a clone). libvirt's capabilities
//! XML has it as `<host><uuid>` (libvirtd.conf `host_uuid`, or the SMBIOS
//! UUID); the sysinfo XML's `<system><entry name='uuid'>` is the fallback.
//! No XML parser: the one element is found by its tags, and whatever is
//! found must be a UUID or it is not used.

use virt::connect::Connect;

use crate::protocol::is_uuid;

/// The host UUID of the libvirt behind `conn`, lowercase, or `None` (then
/// the node sends no `host=`, as nodes before it did).
pub fn host_uuid(conn: &Connect) -> Option<String> {
    let from_caps = conn.capabilities().ok().and_then(|x| from_capabilities(&x));
    from_caps.or_else(|| conn.sys_info(0).ok().and_then(|x| from_sysinfo(&x)))
}

/// `<host>…<uuid>U</uuid>` of a capabilities document.
pub fn from_capabilities(xml: &str) -> Option<String> {
    let host = &xml[xml.find("<host>")?..];
    let host = &host[..host.find("</host>").unwrap_or(host.len())];
    let start = host.find("<uuid>")? + "<uuid>".len();
    let end = host[start..].find("</uuid>")? + start;
    checked(&host[start..end])
}

/// `<system>…<entry name='uuid'>U</entry>` of a sysinfo document.
pub fn from_sysinfo(xml: &str) -> Option<String> {
    let system = &xml[xml.find("<system>")?..];
    let at = system
        .find("<entry name='uuid'>")
        .or_else(|| system.find("<entry name=\"uuid\">"))?;
    let start = at + "<entry name='uuid'>".len();
    let end = system[start..].find("</entry>")? + start;
    checked(&system[start..end])
}

fn checked(text: &str) -> Option<String> {
    let u = text.trim().to_ascii_lowercase();
    is_uuid(&u).then_some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_uuid_is_found_in_capabilities_and_sysinfo() {
        let caps = "<capabilities>\n  <host>\n    <uuid>5A37D478-d7ef-4d4e-85c3-f160891d662a</uuid>\n    <cpu/>\n  </host>\n  <guest><uuid>not-this</uuid></guest>\n</capabilities>";
        assert_eq!(
            from_capabilities(caps).as_deref(),
            Some("5a37d478-d7ef-4d4e-85c3-f160891d662a")
        );
        assert_eq!(from_capabilities("<capabilities><host><cpu/></host><guest><uuid>5a37d478-d7ef-4d4e-85c3-f160891d662a</uuid></guest></capabilities>"), None, "a uuid outside <host> is not the host's");
        assert_eq!(from_capabilities("<host><uuid>garbage</uuid></host>"), None);
        let sysinfo = "<sysinfo type='smbios'>\n <bios><entry name='uuid'>00000000-0000-0000-0000-00000000000f</entry></bios>\n <system>\n  <entry name='manufacturer'>X</entry>\n  <entry name='uuid'>4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00</entry>\n </system>\n</sysinfo>";
        assert_eq!(
            from_sysinfo(sysinfo).as_deref(),
            Some("4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00")
        );
    }
}
