//! A `__cxa_demangle` that declines, so the release binaries leave out the C++ demangler.
//!
//! The release binaries link zig's libc++abi statically (for the vendored libzmq). Its only
//! use of the Itanium demangler is the default terminate handler, which demangles the type
//! of an uncaught C++ exception for its "terminating due to uncaught exception of type ..."
//! line before aborting. That one call pulls in the whole demangler: about 100 KB of code,
//! 140 KB of each release binary with its unwind and data tables (measured, see
//! docs/benchmarks.md, "Binary sizes"). Nothing else here demangles C++ names, and an
//! exception escaping libzmq (which allocates with `new (std::nothrow)` and catches
//! `bad_alloc` itself) ends the process either way: the demangled name is all it buys.
//!
//! libc++abi has a build option for just this, `LIBCXXABI_NON_DEMANGLING_TERMINATE`, but
//! zig builds libc++abi itself, without it. So: a definition in our own object file
//! satisfies the reference before the linker looks in libc++abi.a, and its
//! `cxa_demangle.o` is never pulled in. This one answers "not a valid name" (status -2, the
//! documented failure every caller handles): the terminate handler then prints the mangled
//! type name (`St9bad_alloc`) with the exception's `what()` message, and still aborts.
//!
//! Only with the `slim-cxxabi` feature, which packaging/release.sh turns on; it is not
//! exported, so shared libraries (libvirt's) keep their own.

use std::ffi::{c_char, c_int};

/// `__cxa_demangle` status: "mangled_name is not a valid name under the C++ ABI mangling
/// rules".
const INVALID_MANGLED_NAME: c_int = -2;

/// The Itanium C++ ABI's `__cxa_demangle`, declining every name: returns NULL and, when the
/// caller passes one, sets `*status` to -2. Never touches `buf` or `length`.
#[no_mangle]
pub extern "C" fn __cxa_demangle(
    _mangled_name: *const c_char,
    _buf: *mut c_char,
    _length: *mut usize,
    status: *mut c_int,
) -> *mut c_char {
    if !status.is_null() {
        // SAFETY: the ABI makes `status` either NULL (checked above) or a pointer to an
        // int the caller owns and expects us to write.
        unsafe { *status = INVALID_MANGLED_NAME };
    }
    std::ptr::null_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declines_with_invalid_name_status() {
        let mut status: c_int = 0;
        let out = __cxa_demangle(
            c"St9bad_alloc".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut status,
        );
        assert!(out.is_null());
        assert_eq!(status, INVALID_MANGLED_NAME);
    }

    #[test]
    fn null_status_is_allowed() {
        let out = __cxa_demangle(
            c"_Z1fv".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        assert!(out.is_null());
    }
}
