//! Where the store's settings come from: the `AWS_*` environment variables,
//! then the AWS CLI's files, read the way the AWS CLI reads them.
//!
//! Credentials come from the environment (both keys set), else from the profile
//! in the credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default
//! `~/.aws/credentials`, section `[NAME]`), else from the profile in the config
//! file (`AWS_CONFIG_FILE`, default `~/.aws/config`, section `[profile NAME]`,
//! `[default]` for the default profile); a session token only from where the
//! keys came from. Region (`AWS_REGION`, `AWS_DEFAULT_REGION`) and endpoint
//! (`AWS_ENDPOINT_URL`) come from the environment, else the config file:
//! `region`, and `endpoint_url` of `s3` in the profile's `services` section
//! (`[services NAME]`, then `s3 =` with an indented `endpoint_url = URL`),
//! else the profile's own `endpoint_url`. The profile is
//! `AWS_PROFILE`, else `default`. A missing file reads as empty; an unreadable
//! or malformed one is an error naming the file and line, never quoting it
//! (it holds secrets).

use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What the store is opened with.
pub(crate) struct Settings {
    pub(crate) key_id: String,
    pub(crate) secret: String,
    pub(crate) token: Option<String>,
    pub(crate) region: String,
    pub(crate) endpoint: Option<String>,
}

/// The region when none is set, as in the AWS SDKs for S3.
const DEFAULT_REGION: &str = "us-east-1";

impl Settings {
    /// The settings of the environment `env` looks up and of the files it names.
    pub(crate) fn resolve(env: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        Settings::resolve_with(&env, &|path| std::fs::read_to_string(path))
    }

    /// [`Settings::resolve`] with the files read by `read`.
    fn resolve_with(
        env: &dyn Fn(&str) -> Option<String>,
        read: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Result<Settings> {
        let get = |name: &str| env(name).filter(|value| !value.is_empty());
        let files = Files::load(&get, read)?;
        let (credentials, config) = files.profile(get("AWS_PROFILE").as_deref())?;
        let from_env = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(key_id), Some(secret)) => Some((key_id, secret, get("AWS_SESSION_TOKEN"))),
            _ => None,
        };
        let (key_id, secret, token) = from_env
            .or_else(|| credentials.and_then(Section::credentials))
            .or_else(|| config.and_then(Section::credentials))
            .ok_or(Error::NoCredentials)?;
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .or_else(|| config.and_then(|config| config.get("region")))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let endpoint = get("AWS_ENDPOINT_URL").or_else(|| files.endpoint(config?));
        Ok(Settings { key_id, secret, token, region, endpoint })
    }
}

/// The AWS CLI's credentials and config files, each with its path.
struct Files {
    credentials: (Option<PathBuf>, Ini),
    config: (Option<PathBuf>, Ini),
}

impl Files {
    /// Reads the files the environment `get` names, or those under `$HOME/.aws`.
    fn load(
        get: &dyn Fn(&str) -> Option<String>,
        read: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Result<Files> {
        let home = get("HOME").map(|home| Path::new(&home).join(".aws"));
        let load = |var: &str, default: &str| {
            let path = get(var).map(PathBuf::from).or_else(|| Some(home.as_ref()?.join(default)));
            let ini = Ini::load(path.as_deref(), read)?;
            Ok((path, ini))
        };
        Ok(Files {
            credentials: load("AWS_SHARED_CREDENTIALS_FILE", "credentials")?,
            config: load("AWS_CONFIG_FILE", "config")?,
        })
    }

    /// The sections of the profile `chosen` (`None`: `default`) in the credentials and
    /// the config file; a profile chosen by name must be in one of them.
    fn profile(&self, chosen: Option<&str>) -> Result<(Option<&Section>, Option<&Section>)> {
        let name = chosen.unwrap_or("default");
        let config_name = if name == "default" { name.to_owned() } else { format!("profile {name}") };
        let found = (self.credentials.1.section(name), self.config.1.section(&config_name));
        if name != "default" && matches!(found, (None, None)) {
            let shown = |path: &Option<PathBuf>| {
                path.as_ref().map_or_else(|| "(no file)".to_owned(), |path| path.display().to_string())
            };
            let files = format!("{} nor {}", shown(&self.credentials.0), shown(&self.config.0));
            return Err(Error::ProfileMissing { profile: name.to_owned(), files });
        }
        Ok(found)
    }

    /// The endpoint of the config file's profile section `config`: that of `s3` in
    /// its `services` section, else its own.
    fn endpoint(&self, config: &Section) -> Option<String> {
        let services =
            config.get("services").and_then(|name| self.config.1.section(&format!("services {name}")));
        services.and_then(|services| services.get("s3.endpoint_url")).or_else(|| config.get("endpoint_url"))
    }
}

/// An INI file as the AWS CLI writes it: `[section]` headers, `key = value`
/// lines, `#` and `;` comment lines, and lines indented under a `key =` with no
/// value, kept as `key.subkey`.
#[derive(Debug, Default)]
struct Ini {
    sections: Vec<Section>,
}

#[derive(Debug)]
struct Section {
    name: String,
    entries: Vec<(String, String)>,
}

impl Section {
    /// The value of `key` (lowercase), if set and not empty.
    fn get(&self, key: &str) -> Option<String> {
        let value = self.entries.iter().find(|(name, _)| name == key).map(|(_, value)| value);
        value.filter(|value| !value.is_empty()).cloned()
    }

    /// The access key, secret key and session token, if both keys are set.
    fn credentials(&self) -> Option<(String, String, Option<String>)> {
        Some((
            self.get("aws_access_key_id")?,
            self.get("aws_secret_access_key")?,
            self.get("aws_session_token"),
        ))
    }
}

impl Ini {
    /// Reads and parses `path`; no path, or no file there, is an empty file.
    fn load(path: Option<&Path>, read: &dyn Fn(&Path) -> io::Result<String>) -> Result<Ini> {
        let Some(path) = path else { return Ok(Ini::default()) };
        match read(path) {
            Ok(text) => Ini::parse(&text, path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Ini::default()),
            Err(source) => Err(Error::ConfigRead { path: path.to_owned(), source }),
        }
    }

    /// Parses `text`, the contents of `path` (named in errors).
    fn parse(text: &str, path: &Path) -> Result<Ini> {
        let mut sections: Vec<Section> = Vec::new();
        // The key whose indented lines follow (a `key =` with no value).
        let mut nest: Option<String> = None;
        for (index, line) in text.lines().enumerate() {
            let malformed = |reason| Error::ConfigSyntax { path: path.to_owned(), line: index + 1, reason };
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
                continue;
            }
            if let Some(header) = trimmed.strip_prefix('[') {
                let name =
                    header.strip_suffix(']').ok_or_else(|| malformed("a section header without ']'"))?;
                sections.push(Section { name: name.trim().to_owned(), entries: Vec::new() });
                nest = None;
                continue;
            }
            let section =
                sections.last_mut().ok_or_else(|| malformed("a setting before the first [section]"))?;
            let (key, value) = trimmed.split_once('=').ok_or_else(|| malformed("not `key = value`"))?;
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim().to_owned());
            if key.is_empty() {
                return Err(malformed("a setting without a name"));
            }
            if !line.starts_with([' ', '\t']) {
                nest = value.is_empty().then(|| key.clone());
                section.entries.push((key, value));
            } else if let Some(parent) = &nest {
                section.entries.push((format!("{parent}.{key}"), value));
            } else {
                return Err(malformed("an indented line under a setting that has a value"));
            }
        }
        Ok(Ini { sections })
    }

    /// The first section called `name`.
    fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|section| section.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "/home/u/.aws/credentials";
    const CONFIG: &str = "/home/u/.aws/config";

    /// Resolves with the environment `env` (HOME=/home/u) and the files `files`.
    fn resolve(env: &[(&str, &str)], files: &[(&str, &str)]) -> Result<Settings> {
        let lookup = |name: &str| {
            let home = (name == "HOME").then(|| "/home/u".to_owned());
            home.or_else(|| env.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string()))
        };
        let read = |path: &Path| {
            let found = files.iter().find(|(name, _)| Path::new(name) == path);
            found.map(|(_, text)| text.to_string()).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        };
        Settings::resolve_with(&lookup, &read)
    }

    const ENV_KEYS: [(&str, &str); 2] =
        [("AWS_ACCESS_KEY_ID", "env-id"), ("AWS_SECRET_ACCESS_KEY", "env-secret")];
    const CREDENTIALS_TEXT: &str = "# keys\n[default]\naws_access_key_id = cred-id\naws_secret_access_key=cred-secret\naws_session_token = cred-token\n";
    const CONFIG_TEXT: &str = "[default]\n; comment\nregion = eu-west-3\naws_access_key_id = conf-id\naws_secret_access_key = conf-secret\nendpoint_url = http://config:9000\n";

    #[test]
    fn environment_wins_then_credentials_file_then_config_file() {
        let files = [(CREDENTIALS, CREDENTIALS_TEXT), (CONFIG, CONFIG_TEXT)];
        let env_region =
            [ENV_KEYS[0], ENV_KEYS[1], ("AWS_REGION", "ap-south-1"), ("AWS_ENDPOINT_URL", "http://env:1")];
        let settings = resolve(&env_region, &files).expect("settings");
        assert_eq!((settings.key_id.as_str(), settings.secret.as_str()), ("env-id", "env-secret"));
        assert_eq!(settings.token, None, "no token from a file when the keys come from the environment");
        assert_eq!(
            (settings.region.as_str(), settings.endpoint.as_deref()),
            ("ap-south-1", Some("http://env:1"))
        );
        let settings = resolve(&[("AWS_ACCESS_KEY_ID", "env-id")], &files).expect("settings");
        assert_eq!((settings.key_id.as_str(), settings.secret.as_str()), ("cred-id", "cred-secret"));
        assert_eq!(settings.token.as_deref(), Some("cred-token"));
        assert_eq!(
            (settings.region.as_str(), settings.endpoint.as_deref()),
            ("eu-west-3", Some("http://config:9000"))
        );
        let settings = resolve(&[], &[(CREDENTIALS, "[other]\n"), (CONFIG, CONFIG_TEXT)]).expect("settings");
        assert_eq!((settings.key_id.as_str(), settings.secret.as_str()), ("conf-id", "conf-secret"));
    }

    #[test]
    fn named_profile_and_files_named_by_the_environment() {
        let credentials = "[default]\naws_access_key_id = d\naws_secret_access_key = d\n[work]\naws_access_key_id = w-id\naws_secret_access_key = w-secret\n";
        let config = "[profile work]\nregion = us-west-2\nservices = local\nendpoint_url = http://profile:1\n[services local]\ns3 =\n  endpoint_url = http://service:2\nsts =\n  endpoint_url = http://sts:3\n";
        let env = [("AWS_PROFILE", "work"), ("AWS_SHARED_CREDENTIALS_FILE", "/c"), ("AWS_CONFIG_FILE", "/f")];
        let settings = resolve(&env, &[("/c", credentials), ("/f", config)]).expect("settings");
        assert_eq!((settings.key_id.as_str(), settings.secret.as_str()), ("w-id", "w-secret"));
        assert_eq!(
            (settings.region.as_str(), settings.endpoint.as_deref()),
            ("us-west-2", Some("http://service:2"))
        );
        let settings = resolve(&[ENV_KEYS[0], ENV_KEYS[1]], &[]).expect("settings");
        assert_eq!((settings.region.as_str(), settings.endpoint), (DEFAULT_REGION, None));
        let default_region = [ENV_KEYS[0], ENV_KEYS[1], ("AWS_DEFAULT_REGION", "sa-east-1")];
        let settings = resolve(&default_region, &[(CONFIG, CONFIG_TEXT)]).expect("settings");
        assert_eq!(settings.region, "sa-east-1", "AWS_DEFAULT_REGION wins over the config file");
    }

    #[test]
    fn missing_profile_is_named() {
        let err =
            resolve(&[("AWS_PROFILE", "nope")], &[(CREDENTIALS, CREDENTIALS_TEXT)]).err().expect("an error");
        assert!(matches!(err, Error::ProfileMissing { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("AWS profile 'nope' (AWS_PROFILE) is in neither {CREDENTIALS} nor {CONFIG}")
        );
    }

    #[test]
    fn no_credentials_anywhere() {
        let err = resolve(&[("AWS_ACCESS_KEY_ID", "id")], &[(CONFIG, "[default]\nregion = x\n")]).err();
        assert!(matches!(err, Some(Error::NoCredentials)), "{err:?}");
    }

    #[test]
    fn malformed_file_is_named_without_its_contents() {
        let text = "[default]\naws_secret_access_key = s3cr3t\nthis line is s3cr3t too\n";
        let err = resolve(&[], &[(CREDENTIALS, text)]).err().expect("an error");
        assert!(matches!(err, Error::ConfigSyntax { line: 3, .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(CREDENTIALS) && message.contains("line 3"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
        for (text, line) in [("key = v\n", 1), ("[default\n", 1), ("[default]\nk = v\n  sub = x\n", 3)] {
            let err = resolve(&[], &[(CONFIG, text)]).err();
            assert!(
                matches!(err, Some(Error::ConfigSyntax { line: l, .. }) if l == line),
                "{text:?}: {err:?}"
            );
        }
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = Settings::resolve(|name| (name == "AWS_CONFIG_FILE").then(|| "/".to_owned())).err();
        let Some(err @ Error::ConfigRead { .. }) = err else { panic!("not a read error: {err:?}") };
        assert!(err.to_string().starts_with("cannot read the AWS settings file /: "), "{err}");
    }
}
