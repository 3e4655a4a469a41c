//! A real Nagios 4 core (Debian's nagios4-core) with its own configuration
//! under the test directory, run as the `nagios` user, its results read
//! back from its status.dat; checks are forced through its external command
//! file and every wait polls a condition with a deadline.
//!
//! The test gives the resource macros (`$USERn$`), the command definitions
//! and the services (each a `check_command` as Nagios writes it,
//! `COMMAND!ARG1!ARG2`), all on one host `vmwatch-test` at 127.0.0.1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{now_ms, read_text, signal, tail, wait_for};

pub const NAGIOS_DEADLINE: Duration = Duration::from_secs(60);

/// What Nagios recorded of one check.
#[derive(Debug, Clone)]
pub struct Result {
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub state: u8,
    /// The first line of the plugin's output, without the perfdata.
    pub output: String,
    /// The lines after the first.
    pub long_output: String,
    pub perfdata: String,
}

/// A Nagios 4 core; killed when dropped.
pub struct Nagios {
    pub dir: PathBuf,
    child: Child,
}

impl Nagios {
    /// Writes the configuration to `top/nagios`, checks it with
    /// `nagios4 -v`, starts the core and waits until it lists every service.
    pub fn start(
        top: &Path,
        resources: &[(&str, String)],
        commands: &[(&str, String)],
        services: &[(&str, String)],
    ) -> Nagios {
        let dir = top.join("nagios");
        std::fs::create_dir_all(dir.join("checkresults")).unwrap();
        let (uid, gid) = (user_id("-u", "nagios"), user_id("-g", "nagios"));
        for d in [dir.clone(), dir.join("checkresults")] {
            std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
        }
        let d = dir.display();
        let cfg = format!(
            "log_file={d}/nagios.log\ncfg_file={d}/objects.cfg\nobject_cache_file={d}/objects.cache\n\
             precached_object_file={d}/objects.precache\nresource_file={d}/resource.cfg\n\
             status_file={d}/status.dat\nstatus_update_interval=1\nnagios_user=nagios\nnagios_group=nagios\n\
             check_external_commands=1\ncommand_file={d}/nagios.cmd\nlock_file={d}/nagios.lock\n\
             temp_file={d}/nagios.tmp\ntemp_path={d}\ncheck_result_path={d}/checkresults\n\
             query_socket={d}/nagios.qh\nretain_state_information=0\nstate_retention_file={d}/retention.dat\n\
             interval_length=1\nuse_syslog=0\nenable_notifications=0\nlog_rotation_method=n\n\
             enable_flap_detection=0\ncheck_workers=1\nservice_check_timeout=30\n\
             check_result_reaper_frequency=1\n"
        );
        std::fs::write(dir.join("nagios.cfg"), cfg).unwrap();
        let mut res = String::from("$USER1$=/usr/lib/nagios/plugins\n");
        for (k, v) in resources {
            res.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(dir.join("resource.cfg"), res).unwrap();
        let mut obj = String::from(
            "define timeperiod {\n timeperiod_name always\n alias always\n sunday 00:00-24:00\n monday 00:00-24:00\n\
             tuesday 00:00-24:00\n wednesday 00:00-24:00\n thursday 00:00-24:00\n friday 00:00-24:00\n saturday 00:00-24:00\n}\n\
             define command {\n command_name check_true\n command_line /bin/true\n}\n\
             define contact {\n contact_name nobody\n host_notifications_enabled 0\n service_notifications_enabled 0\n\
             host_notification_period always\n service_notification_period always\n host_notification_options n\n\
             service_notification_options n\n host_notification_commands check_true\n service_notification_commands check_true\n}\n\
             define host {\n host_name vmwatch-test\n address 127.0.0.1\n check_command check_true\n max_check_attempts 1\n\
             check_period always\n check_interval 3600\n contacts nobody\n notification_period always\n}\n",
        );
        for (name, line) in commands {
            obj.push_str(&format!(
                "define command {{\n command_name {name}\n command_line {line}\n}}\n"
            ));
        }
        for (name, check) in services {
            obj.push_str(&format!(
                "define service {{\n host_name vmwatch-test\n service_description {name}\n check_command {check}\n\
                 max_check_attempts 1\n check_interval 3600\n retry_interval 3600\n check_period always\n\
                 contacts nobody\n notification_period always\n}}\n"
            ));
        }
        std::fs::write(dir.join("objects.cfg"), obj).unwrap();
        let cfg_path = dir.join("nagios.cfg");
        let verify = Command::new("nagios4")
            .arg("-v")
            .arg(&cfg_path)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "nagios4 -v refused the test configuration:\n{}",
            String::from_utf8_lossy(&verify.stdout)
        );
        let child = Command::new("nagios4")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nagios4");
        let n = Nagios { dir, child };
        wait_for(
            "Nagios writes status.dat with every service",
            NAGIOS_DEADLINE,
            || {
                let s = n.services();
                services
                    .iter()
                    .all(|(name, _)| s.contains_key(*name))
                    .then_some(())
            },
            || n.report(),
        );
        n
    }

    /// Every `servicestatus` block of status.dat, by service description.
    pub fn services(&self) -> HashMap<String, HashMap<String, String>> {
        let text = read_text(&self.dir.join("status.dat"));
        let mut out = HashMap::new();
        let mut block: Option<HashMap<String, String>> = None;
        for line in text.lines() {
            let line = line.trim();
            if line == "servicestatus {" {
                block = Some(HashMap::new());
            } else if line == "}" {
                if let Some(b) = block.take() {
                    if let Some(name) = b.get("service_description") {
                        out.insert(name.clone(), b);
                    }
                }
            } else if let (Some(b), Some((k, v))) = (block.as_mut(), line.split_once('=')) {
                b.insert(k.to_string(), v.to_string());
            }
        }
        out
    }

    /// The `servicestatus` block of `service` as status.dat has it.
    pub fn status_block(&self, service: &str) -> String {
        let text = read_text(&self.dir.join("status.dat"));
        let needle = format!("\tservice_description={service}\n");
        text.split("servicestatus {")
            .find(|b| b.contains(&needle))
            .map(|b| {
                format!(
                    "servicestatus {{{}",
                    &b[..b.find('}').map_or(b.len(), |i| i + 1)]
                )
            })
            .unwrap_or_default()
    }

    fn last_check(&self, service: &str) -> u64 {
        self.services()
            .get(service)
            .and_then(|s| s.get("last_check"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Forces a check of `service` now and returns what Nagios recorded of
    /// the first result after the world changed.
    pub fn check(&self, service: &str) -> Result {
        let before = self.last_check(service);
        // last_check has 1 s resolution: start in a later second than the
        // previous result, so the new one is recognisable.
        wait_for(
            "the clock to pass the previous check's second",
            Duration::from_secs(3),
            || (now_ms() / 1000 > before).then_some(()),
            String::new,
        );
        let t = now_ms() / 1000;
        let cmd = format!("[{t}] SCHEDULE_FORCED_SVC_CHECK;vmwatch-test;{service};{t}\n");
        let pipe = self.dir.join("nagios.cmd");
        wait_for(
            "Nagios's command file takes the forced check",
            NAGIOS_DEADLINE,
            || {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&pipe)
                    .ok()?;
                f.write_all(cmd.as_bytes()).ok()
            },
            || self.report(),
        );
        wait_for(
            &format!("a result of {service} checked at or after {t}"),
            NAGIOS_DEADLINE,
            || {
                let s = self.services();
                let svc = s.get(service)?;
                let last: u64 = svc.get("last_check")?.parse().ok()?;
                (last >= t && svc.get("has_been_checked")? == "1").then(|| Result {
                    state: svc["current_state"].parse().unwrap_or(9),
                    output: svc["plugin_output"].clone(),
                    long_output: svc.get("long_plugin_output").cloned().unwrap_or_default(),
                    perfdata: svc.get("performance_data").cloned().unwrap_or_default(),
                })
            },
            || self.report(),
        )
    }

    pub fn report(&self) -> String {
        format!(
            "--- nagios.log:\n{}\n",
            tail(&self.dir.join("nagios.log"), 30)
        )
    }
}

impl Drop for Nagios {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `id FLAG user` as a number; fails the test if there is no such user.
pub fn user_id(flag: &str, user: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output().unwrap();
    assert!(
        out.status.success(),
        "no user {user} (tests/support/setup-nagios.sh creates it)"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
