//! A real `docker-registry` (distribution 2.8) process on 127.0.0.1, killed on drop.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry with its own storage directory.
pub struct TestRegistry {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    _dir: tempfile::TempDir,
}

/// How clients must authenticate.
pub enum Auth {
    None,
    /// htpasswd basic auth with one user.
    Htpasswd {
        user: String,
        password: String,
    },
}

impl TestRegistry {
    /// Starts an anonymous registry.
    pub fn start() -> Result<TestRegistry> {
        Self::start_with(Auth::None)
    }

    pub fn start_with(auth: Auth) -> Result<TestRegistry> {
        let mut last = None;
        // A free port can be taken by someone else before the registry binds it: retry.
        for _ in 0..3 {
            match Self::try_start(&auth) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn try_start(auth: &Auth) -> Result<TestRegistry> {
        let bin = which("docker-registry")
            .context("docker-registry is not installed (apt-get install docker-registry)")?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .context("htpasswd is not installed (apt-get install apache2-utils)")?;
                if !out.status.success() {
                    bail!("htpasswd failed");
                }
                std::fs::write(dir.path().join("htpasswd"), &out.stdout)?;
                format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth_yaml}",
            dir.path().join("data").display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config)?;
        let child = spawn(&bin, dir.path())?;
        let mut reg = TestRegistry {
            child,
            addr,
            _dir: dir,
        };
        reg.wait_ready(Duration::from_secs(20))?;
        Ok(reg)
    }

    /// Kills the registry process (dropping every open connection) and starts it again on the
    /// same port with the same storage.
    pub fn restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let bin = which("docker-registry").context("docker-registry is not installed")?;
        self.child = spawn(&bin, self._dir.path())?;
        self.wait_ready(Duration::from_secs(20))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self._dir.path().join("registry.log"))
                    .unwrap_or_default();
                bail!("docker-registry exited with {status}: {log}");
            }
            if let Ok(code) = http_status(&self.addr, "/v2/") {
                if code == 200 || code == 401 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("docker-registry on {} not ready after {limit:?}", self.addr)
    }

    /// The registry's storage directory (to corrupt blobs in fault tests).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &Path, dir: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))?;
    Command::new(bin)
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting docker-registry")
}

/// The HTTP status of a GET on the registry.
pub fn http_status(addr: &str, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    let line = String::from_utf8_lossy(&buf[..n]);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    Ok(code)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Finds an executable on PATH (and the sbin directories a non-login root shell may lack).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].iter().map(Into::into))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
