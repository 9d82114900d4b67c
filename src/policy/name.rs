//! TEMPORARY stub, replaced by the real normaliser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid name")]
    Invalid,
}
pub fn normalize(input: &str) -> Result<String, NameError> {
    let s = input.trim().trim_end_matches('.').to_ascii_lowercase();
    if s.is_empty() { Err(NameError::Invalid) } else { Ok(s) }
}
pub fn is_localhost_class(name: &str) -> bool { name == "localhost" }
