//! Doppler's name transformers (ESO's `nameTransformer`).
//!
//! Doppler names are `UPPER_SNAKE` (upper-case letters, digits, underscores). A transformer
//! renames them for environments that expect another style:
//!
//! | transformer   | `API_KEY`        | `SMTP__USER_NAME`   |
//! |---------------|------------------|---------------------|
//! | `upper-camel` | `ApiKey`         | `SmtpUserName`      |
//! | `camel`       | `apiKey`         | `smtpUserName`      |
//! | `lower-snake` | `api_key`        | `smtp_user_name`    |
//! | `lower-kebab` | `api-key`        | `smtp-user-name`    |
//! | `tf-var`      | `TF_VAR_api_key` | `TF_VAR_smtp_user_name` |
//! | `dotnet-env`  | `ApiKey`         | `Smtp__UserName`    |
//!
//! Doppler applies them server-side to a download (`name_transformer=`); secretsync applies
//! them to the names of its one untransformed download instead, so single keys (by their
//! Doppler name) and `find` (by transformed name) are served from the same request.

use secretsync_core::{Error, Result};

/// One of Doppler's environment-compatible name transformers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameTransformer {
    /// `API_KEY` → `ApiKey`.
    UpperCamel,
    /// `API_KEY` → `apiKey`.
    Camel,
    /// `API_KEY` → `api_key`.
    LowerSnake,
    /// `API_KEY` → `api-key`.
    LowerKebab,
    /// `API_KEY` → `TF_VAR_api_key`.
    TfVar,
    /// `SMTP__USER_NAME` → `Smtp__UserName` (.NET configuration sections).
    DotnetEnv,
}

impl NameTransformer {
    /// Parses ESO's names for them.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "upper-camel" => Self::UpperCamel,
            "camel" => Self::Camel,
            "lower-snake" => Self::LowerSnake,
            "lower-kebab" => Self::LowerKebab,
            "tf-var" => Self::TfVar,
            "dotnet-env" => Self::DotnetEnv,
            other => {
                return Err(Error::invalid(format!(
                    "Doppler nameTransformer `{other}`: expected one of upper-camel, camel, lower-snake, tf-var, dotnet-env, lower-kebab"
                )));
            }
        })
    }

    /// ESO's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpperCamel => "upper-camel",
            Self::Camel => "camel",
            Self::LowerSnake => "lower-snake",
            Self::LowerKebab => "lower-kebab",
            Self::TfVar => "tf-var",
            Self::DotnetEnv => "dotnet-env",
        }
    }

    /// The transformed name.
    pub fn apply(self, name: &str) -> String {
        match self {
            Self::UpperCamel => upper_camel(name),
            Self::Camel => words(name)
                .iter()
                .enumerate()
                .map(|(i, w)| if i == 0 { w.clone() } else { capitalize(w) })
                .collect(),
            Self::LowerSnake => words(name).join("_"),
            Self::LowerKebab => words(name).join("-"),
            Self::TfVar => format!("TF_VAR_{}", words(name).join("_")),
            Self::DotnetEnv => name.split("__").map(upper_camel).collect::<Vec<_>>().join("__"),
        }
    }
}

fn words(name: &str) -> Vec<String> {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn upper_camel(name: &str) -> String {
    words(name).iter().map(|w| capitalize(w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_the_docs() {
        let t = |n: &str, s: &str| NameTransformer::parse(n).unwrap().apply(s);
        assert_eq!(t("upper-camel", "API_KEY"), "ApiKey");
        assert_eq!(t("camel", "API_KEY"), "apiKey");
        assert_eq!(t("lower-snake", "API_KEY"), "api_key");
        assert_eq!(t("lower-kebab", "API_KEY"), "api-key");
        assert_eq!(t("tf-var", "API_KEY"), "TF_VAR_api_key");
        assert_eq!(t("dotnet-env", "SMTP__USER_NAME"), "Smtp__UserName");
        assert_eq!(t("upper-camel", "OAUTH2_CLIENT_ID"), "Oauth2ClientId");
        for n in [
            "upper-camel",
            "camel",
            "lower-snake",
            "lower-kebab",
            "tf-var",
            "dotnet-env",
        ] {
            assert_eq!(NameTransformer::parse(n).unwrap().as_str(), n);
        }
        assert!(NameTransformer::parse("dotnet").is_err());
    }
}
