//! Which `fibcache:cache` world a component implements: its version, checked against the one
//! this host speaks before anything is instantiated, and the indices of the functions the host
//! calls, so that a call looks nothing up by name.

use wasmtime::component::{Component, ComponentExportIndex};
use wasmtime::Engine;

/// The package of the WIT world (`wit/cache.wit`) this host speaks.
pub const PACKAGE: &str = "fibcache:cache";

/// The version of [`PACKAGE`] this host speaks; a guest built for a semver-compatible version
/// (the same major, or for 0.x the same minor) loads.
pub const VERSION: &str = "0.1.0";

/// The export indices of one component: the required `backend` functions, and those of the
/// optional capabilities it offers.
#[derive(Debug, Clone)]
pub(crate) struct Exports {
    pub backends: ComponentExportIndex,
    pub open: ComponentExportIndex,
    pub get: ComponentExportIndex,
    pub set: ComponentExportIndex,
    /// `expiry.remaining`, if the guest exports `expiry`.
    pub remaining: Option<ComponentExportIndex>,
    /// `claims.{claim, renew, release}`, if the guest exports `claims`.
    pub claims: Option<[ComponentExportIndex; 3]>,
}

impl Exports {
    /// Finds the world's exports in `component`, refusing one of another world or of an
    /// incompatible version.
    ///
    /// # Errors
    /// One line saying what the component is instead, naming both versions on a mismatch.
    pub fn of(component: &Component, engine: &Engine) -> Result<Exports, String> {
        let ty = component.component_type();
        let names: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
        let prefix = format!("{PACKAGE}/");
        let ours: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| name.starts_with(&prefix))
            .collect();
        let Some(backend) = ours.iter().find(|name| interface(name) == Some("backend")) else {
            let found = if names.is_empty() {
                "nothing".to_owned()
            } else {
                names.join(", ")
            };
            return Err(format!(
                "not a fibcache cache component: it exports {found}, not \
                 `{PACKAGE}/backend@{VERSION}` (build it against wit/cache.wit)"
            ));
        };
        let theirs = backend.rsplit_once('@').map_or("", |(_, v)| v);
        if !compatible(theirs, VERSION) {
            return Err(format!(
                "built for {PACKAGE}@{theirs}, but this fibcache speaks {PACKAGE}@{VERSION}; \
                 rebuild the guest against this release's wit/cache.wit"
            ));
        }
        let find = |interface: &str| {
            ours.iter()
                .find(|name| self::interface(name) == Some(interface))
                .and_then(|name| component.get_export_index(None, name))
        };
        let func = |instance: &ComponentExportIndex, name: &str| {
            component
                .get_export_index(Some(instance), name)
                .ok_or_else(|| format!("its `{backend}` export has no function `{name}`"))
        };
        let backend = find("backend").ok_or("cannot index its backend export")?;
        let remaining = match find("expiry") {
            Some(expiry) => Some(func(&expiry, "remaining")?),
            None => None,
        };
        let claims = match find("claims") {
            Some(claims) => Some([
                func(&claims, "claim")?,
                func(&claims, "renew")?,
                func(&claims, "release")?,
            ]),
            None => None,
        };
        Ok(Exports {
            backends: func(&backend, "backends")?,
            open: func(&backend, "open")?,
            get: func(&backend, "get")?,
            set: func(&backend, "set")?,
            remaining,
            claims,
        })
    }
}

/// The interface of an export name such as `fibcache:cache/backend@0.1.0`.
fn interface(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(
        rest.split_once('@')
            .map_or(rest, |(interface, _)| interface),
    )
}

/// Whether a guest built for version `theirs` works with a host of version `ours`: semver
/// compatibility, where for 0.x the minor version is the breaking one.
fn compatible(theirs: &str, ours: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
    match (parts(theirs), parts(ours)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compatible_within_a_major_and_0x_minor() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("", "0.1.0"));
        assert!(!compatible("x.y", "0.1.0"));
    }

    #[test]
    fn interface_names_are_read_from_export_names() {
        assert_eq!(interface("fibcache:cache/backend@0.1.0"), Some("backend"));
        assert_eq!(interface("fibcache:cache/claims"), Some("claims"));
        assert_eq!(interface("example:other/greeter@0.1.0"), None);
    }
}
