//! Text formats secretsync reads and writes, each in one place so every reader and writer
//! agrees: [`dotenv`] (the dotenv sink and the `file` provider's dotenv files), [`tfvars`]
//! (Terraform's variable files and `terraform output -json`, read by the `file` provider).

pub mod dotenv;
pub mod tfvars;
