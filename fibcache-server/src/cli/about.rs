//! [`About`]: who the binary is, and [`about!`](crate::about), which fills it in.

/// Who the binary is: the name its usage line, error lines and shell completions use, and
/// what `--version` and `--help` show.
///
/// Build it with [`about!`](crate::about), which takes the values from the binary that calls
/// it and its Cargo package.
#[derive(Debug, Clone, Copy)]
pub struct About {
    /// The binary's name (`CARGO_BIN_NAME`, else the package's name).
    name: &'static str,
    /// The Cargo package that builds the binary (`CARGO_PKG_NAME`): whose features the
    /// not-compiled-in hint names.
    package: &'static str,
    /// Its version (`CARGO_PKG_VERSION`).
    version: &'static str,
    /// Its one-line description (`CARGO_PKG_DESCRIPTION`).
    description: &'static str,
}

impl About {
    /// The values [`about!`](crate::about) fills in.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        package: &'static str,
        version: &'static str,
        description: &'static str,
    ) -> Self {
        About {
            name,
            package,
            version,
            description,
        }
    }

    /// The binary's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Cargo package that builds it.
    pub fn package(&self) -> &'static str {
        self.package
    }

    /// Its version.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Its one-line description.
    pub fn description(&self) -> &'static str {
        self.description
    }
}

/// The [`About`] of the binary that invokes it: its name (`CARGO_BIN_NAME`, so a binary named
/// unlike its package shows its own name), and the version and description of its package.
///
/// ```
/// let about = fibcache_server::about!();
/// assert_eq!(about.package(), "fibcache-server");
/// assert_eq!(about.version(), env!("CARGO_PKG_VERSION"));
/// ```
#[macro_export]
macro_rules! about {
    () => {
        $crate::cli::About::new(
            match ::std::option_env!("CARGO_BIN_NAME") {
                ::std::option::Option::Some(name) => name,
                ::std::option::Option::None => ::std::env!("CARGO_PKG_NAME"),
            },
            ::std::env!("CARGO_PKG_NAME"),
            ::std::env!("CARGO_PKG_VERSION"),
            ::std::env!("CARGO_PKG_DESCRIPTION"),
        )
    };
}
