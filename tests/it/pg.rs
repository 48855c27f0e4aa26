//! A real PostgreSQL server for one test (or bench): `initdb` into a
//! temporary directory, `pg_ctl start` on a free loopback port, stopped
//! (`-m immediate`) when dropped, also when the test panics.
//!
//! Debian's binaries live in `/usr/lib/postgresql/<version>/bin`
//! (`.ci/postgres.sh` installs them; see [`installed`]); `PG_BIN` overrides
//! the directory.
//! `initdb` refuses to run as root, so as root every server command runs as
//! the package's `postgres` user through `runuser`, with the data directory
//! owned by that user.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgServer {
    // Dropped after `Drop::drop` ran: removes the data directory.
    _dir: tempfile::TempDir,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

impl PgServer {
    /// A fresh, empty cluster, started; panics without the server binaries
    /// (see [`installed`]).
    pub fn start() -> PgServer {
        let bin = installed().unwrap_or_else(|why| panic!("{why}; run .ci/postgres.sh"));
        PgServer::start_with(bin)
    }

    /// A fresh, empty cluster of the binaries in `bin`, started.
    pub fn start_with(bin: PathBuf) -> PgServer {
        let as_postgres = is_root();
        let mut builder = tempfile::Builder::new();
        builder.prefix("proxy-auth-pg-");
        // The `postgres` user must be able to reach the directory: $TMPDIR
        // may be under root's home; /tmp is traversable by everyone.
        let dir = if as_postgres {
            builder.tempdir_in("/tmp")
        } else {
            builder.tempdir()
        }
        .expect("a temporary directory");
        if as_postgres {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()));
        }
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let server = PgServer {
            port: free_port(),
            data,
            log,
            bin,
            as_postgres,
            _dir: dir,
        };
        server.tool(
            "initdb",
            &[
                "-D",
                server.data.to_str().expect("utf-8 temp path"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        // Only loopback TCP, no socket file; durability is not under test.
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(server.data.join("postgresql.conf"))
            .expect("postgresql.conf written by initdb");
        writeln!(
            conf,
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
             fsync = off\nfull_page_writes = off\nsynchronous_commit = off\nmax_connections = 50",
            server.port
        )
        .expect("postgresql.conf is writable");
        server.resume();
        server
    }

    /// `postgres://` URL of the `postgres` database as the superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server, disconnecting every client (`-m fast`).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast", "-w"]);
    }

    /// Starts the (stopped) server again on the same port.
    pub fn resume(&self) {
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            self.log.to_str().expect("utf-8 temp path"),
        ]);
    }

    /// A plain client, for changes made "by hand" and for inspection.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("the test server accepts connections");
        tokio::spawn(connection);
        client
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut all = vec!["-D", self.data.to_str().expect("utf-8 temp path")];
        all.extend_from_slice(args);
        self.tool("pg_ctl", &all);
    }

    fn tool(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command.args(args);
        if let Err(message) = try_run(&mut command) {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            panic!("{message}\nserver log:\n{log}");
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Whatever state the test left it in; errors (already stopped) are fine.
        let program = self.bin.join("pg_ctl");
        let data = self.data.to_str().unwrap_or_default();
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let _ = command
            .args(["-D", data, "stop", "-m", "immediate", "-w"])
            .output();
    }
}

/// The directory of the server binaries (`PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin`), and as root the `postgres` user to
/// run them as; or what is missing.
pub fn installed() -> Result<PathBuf, String> {
    let bin = match std::env::var_os("PG_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let root = Path::new("/usr/lib/postgresql");
            let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|entry| {
                    let version = entry.file_name().to_str()?.parse().ok()?;
                    let bin = entry.path().join("bin");
                    bin.join("initdb").exists().then_some((version, bin))
                })
                .collect();
            versions.sort();
            let Some((_, bin)) = versions.pop() else {
                return Err(
                    "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (or set PG_BIN)"
                        .into(),
                );
            };
            bin
        }
    };
    for tool in ["initdb", "pg_ctl"] {
        if !bin.join(tool).exists() {
            return Err(format!("no {tool} in {}", bin.display()));
        }
    }
    let postgres_user = || {
        Command::new("id")
            .arg("postgres")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if is_root() && !postgres_user() {
        return Err("no `postgres` user to run the PostgreSQL server as (root may not)".into());
    }
    Ok(bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("bound").port()
}

fn run(command: &mut Command) {
    if let Err(message) = try_run(command) {
        panic!("{message}");
    }
}

fn try_run(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
