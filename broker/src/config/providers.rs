//! Kafka's config providers (KIP-297, KIP-421): a value may hold `${provider:[path:]key}`
//! variables, resolved when the properties are loaded by the providers that
//! `config.providers` names. Gregor knows Kafka's three built-in classes:
//!
//! - `org.apache.kafka.common.config.provider.EnvVarConfigProvider`: `${env:NAME}` is the
//!   environment variable `NAME` (the operator advertises a NodePort listener at
//!   `${env:HOST_IP}`, the pod's node address from the downward API);
//! - `org.apache.kafka.common.config.provider.FileConfigProvider`: `${file:/path:key}` is `key`
//!   of the properties file `/path`;
//! - `org.apache.kafka.common.config.provider.DirectoryConfigProvider`: `${dir:/path:name}` is
//!   the content of the file `name` in the directory `/path` (a mounted Secret, say).
//!
//! Where Kafka leaves a variable it cannot resolve as it is (and the value then usually fails to
//! parse somewhere else), Gregor refuses it at once, naming the key and the variable. A value
//! naming a provider that `config.providers` does not list is left alone, as in Kafka.

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;

/// The key listing the providers, and the prefix of their settings.
pub const PROVIDERS_KEY: &str = "config.providers";

const ENV_CLASS: &str = "org.apache.kafka.common.config.provider.EnvVarConfigProvider";
const FILE_CLASS: &str = "org.apache.kafka.common.config.provider.FileConfigProvider";
const DIR_CLASS: &str = "org.apache.kafka.common.config.provider.DirectoryConfigProvider";

/// One configured provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Env,
    File,
    Directory,
}

impl Provider {
    /// The value of `key` at `path`, or why there is none.
    fn lookup(
        self,
        path: Option<&str>,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        match (self, path) {
            (Provider::Env, None) => {
                env(key).ok_or_else(|| format!("the environment variable {key} is not set"))
            }
            (Provider::Env, Some(_)) => Err("the env provider takes no path".into()),
            (Provider::File, Some(path)) => {
                let text = read(Path::new(path))?;
                super::parse_properties(&text)
                    .remove(key)
                    .ok_or_else(|| format!("{path} has no key {key}"))
            }
            (Provider::Directory, Some(dir)) => {
                if key.contains('/') || key == ".." {
                    return Err(format!("{key} is not a file name in {dir}"));
                }
                read(&Path::new(dir).join(key))
            }
            (_, None) => Err("a path is required: ${provider:path:key}".into()),
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The providers `config.providers` lists, by name.
fn configured(map: &BTreeMap<String, String>) -> Result<BTreeMap<String, Provider>, ConfigError> {
    let mut out = BTreeMap::new();
    let Some(names) = map.get(PROVIDERS_KEY) else {
        return Ok(out);
    };
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let class_key = format!("{PROVIDERS_KEY}.{name}.class");
        let provider = match map.get(&class_key).map(|c| c.trim()) {
            Some(ENV_CLASS) => Provider::Env,
            Some(FILE_CLASS) => Provider::File,
            Some(DIR_CLASS) => Provider::Directory,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: class_key,
                    value: other.to_string(),
                    reason: format!(
                        "Gregor implements Kafka's built-in providers only: {ENV_CLASS}, \
                         {FILE_CLASS}, {DIR_CLASS}"
                    ),
                })
            }
            None => return Err(ConfigError::Missing(class_key)),
        };
        out.insert(name.to_string(), provider);
    }
    Ok(out)
}

/// Resolves every `${provider:[path:]key}` variable of the configured providers in `map`'s
/// values; `env` reads the environment.
pub fn resolve(
    map: BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let providers = configured(&map)?;
    if providers.is_empty() {
        return Ok(map);
    }
    let mut out = BTreeMap::new();
    for (key, value) in &map {
        let resolved = if key.starts_with(PROVIDERS_KEY) {
            value.clone()
        } else {
            substitute(key, value, &providers, env)?
        };
        out.insert(key.clone(), resolved);
    }
    Ok(out)
}

/// `value` with the variables of known providers replaced.
fn substitute(
    key: &str,
    value: &str,
    providers: &BTreeMap<String, Provider>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let variable = &after[..end];
        let mut parts = variable.splitn(3, ':');
        let name = parts.next().unwrap_or_default();
        let (path, var_key) = match (parts.next(), parts.next()) {
            (Some(k), None) => (None, Some(k)),
            (Some(p), Some(k)) => (Some(p), Some(k)),
            _ => (None, None),
        };
        match (providers.get(name), var_key) {
            (Some(provider), Some(var_key)) => {
                let v =
                    provider
                        .lookup(path, var_key, env)
                        .map_err(|reason| ConfigError::Invalid {
                            key: key.to_string(),
                            value: value.to_string(),
                            reason: format!("cannot resolve ${{{variable}}}: {reason}"),
                        })?;
                out.push_str(&v);
            }
            // Not a variable of a configured provider: kept as written.
            _ => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn env(name: &str) -> Option<String> {
        (name == "HOST_IP").then(|| "10.0.0.7".to_string())
    }

    #[test]
    fn env_variables_resolve_only_with_the_env_provider_configured() {
        let listeners = "CLIENT://kafka-0:9092,EXTERNAL://${env:HOST_IP}:31234";
        let without = props(&[("advertised.listeners", listeners)]);
        assert_eq!(resolve(without.clone(), &env).unwrap(), without);
        let with = props(&[
            ("config.providers", "env"),
            ("config.providers.env.class", ENV_CLASS),
            ("advertised.listeners", listeners),
            ("other", "${file:/x:y} and ${nope}"),
        ]);
        let out = resolve(with, &env).unwrap();
        assert_eq!(
            out["advertised.listeners"],
            "CLIENT://kafka-0:9092,EXTERNAL://10.0.0.7:31234"
        );
        // An unconfigured provider, or no provider at all, is left as written.
        assert_eq!(out["other"], "${file:/x:y} and ${nope}");
        assert_eq!(out["config.providers.env.class"], ENV_CLASS);
    }

    #[test]
    fn an_unset_variable_or_an_unknown_class_is_refused_naming_it() {
        let unset = props(&[
            ("config.providers", "env"),
            ("config.providers.env.class", ENV_CLASS),
            ("advertised.listeners", "EXTERNAL://${env:NODE_NAME}:1"),
        ]);
        let e = resolve(unset, &env).unwrap_err().to_string();
        assert!(
            e.contains("advertised.listeners") && e.contains("NODE_NAME is not set"),
            "{e}"
        );
        let unknown = props(&[
            ("config.providers", "vault"),
            ("config.providers.vault.class", "com.example.Vault"),
        ]);
        let e = resolve(unknown, &env).unwrap_err().to_string();
        assert!(
            e.contains("config.providers.vault.class") && e.contains("com.example.Vault"),
            "{e}"
        );
        let missing = props(&[("config.providers", "env")]);
        let e = resolve(missing, &env).unwrap_err().to_string();
        assert!(e.contains("config.providers.env.class"), "{e}");
    }

    #[test]
    fn file_and_directory_providers_read_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.properties");
        std::fs::write(&file, "password=s3cret\n").unwrap();
        std::fs::write(dir.path().join("user"), "alice").unwrap();
        let (f, d) = (file.display(), dir.path().display());
        let map = props(&[
            ("config.providers", "file,dir"),
            ("config.providers.file.class", FILE_CLASS),
            ("config.providers.dir.class", DIR_CLASS),
            ("a", &format!("${{file:{f}:password}}")),
            ("b", &format!("${{dir:{d}:user}}@x")),
        ]);
        let out = resolve(map, &env).unwrap();
        assert_eq!(
            (out["a"].as_str(), out["b"].as_str()),
            ("s3cret", "alice@x")
        );
        let escape = props(&[
            ("config.providers", "dir"),
            ("config.providers.dir.class", DIR_CLASS),
            ("a", &format!("${{dir:{d}:../etc}}")),
        ]);
        assert!(resolve(escape, &env).is_err());
    }
}
