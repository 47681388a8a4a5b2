//! A local PostgreSQL for development and tests, provisioned on demand when `DATABASE_URL` is unset.
//!
//! The cluster lives in the checkout's git-ignored `.data/postgres/` and is reused across runs. Binaries come from
//! the machine (`/usr/lib/postgresql/<version>/bin` or `PATH`) and are installed with apt-get when missing. initdb
//! and the server refuse to run as root, so as root they run as the `postgres` user. Several processes (parallel
//! test binaries, the three PayCore processes) may call this at once: a file lock serialises them.
//! Production never gets here: it refuses to start without `DATABASE_URL`.

use std::{
    fs::{self, File},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

/// The git-ignored folder of local state, at the root of the checkout this binary was built from.
pub fn data_root() -> PathBuf {
    if let Ok(dir) = std::env::var("PAYCORE_DATA_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".data")
}

/// A running local cluster.
#[derive(Debug, Clone)]
pub struct LocalPostgres {
    pub port: u16,
}

impl LocalPostgres {
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// Starts (provisioning first if needed) the local cluster and returns it. Blocking: call it from
/// `spawn_blocking` in async code, or use [`ensure_database_url`].
pub fn ensure_local_postgres() -> anyhow::Result<LocalPostgres> {
    let root = data_root();
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let lock =
        File::create(root.join("postgres.lock")).context("cannot create the provisioning lock")?;
    lock.lock().context("cannot take the provisioning lock")?;

    let bin = find_or_install_binaries()?;
    let cluster = root.join("postgres");
    let data = cluster.join("data");
    let as_root = is_root();
    if !data.join("PG_VERSION").exists() {
        fs::create_dir_all(&cluster)?;
        if as_root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster))?;
            let canonical = cluster.canonicalize()?;
            let ancestors: Vec<&Path> = canonical.ancestors().skip(1).collect();
            allow_traversal(&ancestors)?;
        }
        tracing::info!(path = %data.display(), "initialising a local PostgreSQL cluster");
        run(pg_command(&bin, "initdb", as_root)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]))?;
    }
    let port = choose_port(&root)?;
    let running = pg_command(&bin, "pg_ctl", as_root)
        .arg("-D")
        .arg(&data)
        .arg("status")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if !running {
        tracing::info!(port, "starting the local PostgreSQL cluster");
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=500",
            cluster.display()
        );
        run(pg_command(&bin, "pg_ctl", as_root)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"]))?;
    }
    Ok(LocalPostgres { port })
}

/// `DATABASE_URL` if configured; otherwise the local cluster's database `name`, created if missing.
pub async fn ensure_database_url(configured: Option<&str>, name: &str) -> anyhow::Result<String> {
    if let Some(url) = configured {
        return Ok(url.to_owned());
    }
    let local = tokio::task::spawn_blocking(ensure_local_postgres)
        .await
        .context("provisioning task panicked")??;
    create_database_if_missing(&local, name).await?;
    Ok(local.url(name))
}

pub async fn create_database_if_missing(local: &LocalPostgres, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&local.url("postgres"))
        .await
        .context("cannot connect to the local cluster")?;
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        // Database names cannot be bound; the name is PayCore's own constant or a test's generated name.
        let sql = format!("create database \"{}\"", name.replace('"', ""));
        if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
        {
            // Another process may have created it in between.
            let created: bool =
                sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
                    .bind(name)
                    .fetch_one(&mut admin)
                    .await?;
            if !created {
                return Err(error).context("cannot create the database");
            }
        }
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_command(bin: &Path, program: &str, as_root: bool) -> Command {
    let path = bin.join(program);
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn find_binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        })
    })
}

fn find_or_install_binaries() -> anyhow::Result<PathBuf> {
    if let Some(bin) = find_binaries() {
        return Ok(bin);
    }
    if !is_root() {
        bail!("PostgreSQL server binaries are missing; install the `postgresql` package or set DATABASE_URL");
    }
    tracing::warn!("PostgreSQL binaries not found; installing them with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends", "postgresql"]))?;
    find_binaries().context("apt-get installed postgresql but its binaries were not found")
}

/// The cluster's port: remembered in `.data/postgres.port`; chosen first from a hash of the checkout's path so
/// two checkouts on one machine do not collide, moving on while a port is taken.
fn choose_port(root: &Path) -> anyhow::Result<u16> {
    if let Ok(port) = std::env::var("PAYCORE_PG_PORT") {
        return port.parse().context("PAYCORE_PG_PORT is not a port");
    }
    let file = root.join("postgres.port");
    if let Some(port) = fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return Ok(port);
    }
    let canonical = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let hash = canonical
        .to_string_lossy()
        .bytes()
        .fold(5381u32, |h, b| h.wrapping_mul(33) ^ u32::from(b));
    let first = 55_000 + u16::try_from(hash % 5_000).unwrap_or(0);
    let port = (first..first.saturating_add(200))
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .context("no free port for the local PostgreSQL")?;
    fs::write(&file, port.to_string())?;
    Ok(port)
}

/// Lets the `postgres` user reach a cluster that root created: a checkout in a private folder (`mktemp -d` makes
/// one with mode 0700) would otherwise stop `initdb`, run as `postgres`, at the folder's door. Only the search bit
/// for others is added, so the folders' contents stay unlisted.
fn allow_traversal(folders: &[&Path]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for folder in folders {
        let mut permissions = fs::metadata(folder)?.permissions();
        let mode = permissions.mode();
        if mode & 0o001 == 0 {
            permissions.set_mode(mode | 0o001);
            fs::set_permissions(folder, permissions)
                .with_context(|| format!("cannot let postgres through {}", folder.display()))?;
        }
    }
    Ok(())
}
