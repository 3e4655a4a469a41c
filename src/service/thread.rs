//! Starting the daemons' threads: each has a name, shown in the log and in
//! `top -H`.

/// Starts a named thread; names show in the log and in `top -H`.
pub fn spawn<F, T>(name: &str, f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // Test hook (tests/daemon_cli.rs): the panic hook is proven on a real
    // daemon by asking one named thread to panic as it starts.
    let panic_here = std::env::var_os("VMWATCH_TEST_PANIC").is_some_and(|v| v == name);
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if panic_here {
                panic!("VMWATCH_TEST_PANIC asked this thread to panic");
            }
            f()
        })
        .unwrap_or_else(|e| panic!("cannot start thread {name}: {e}"))
}
