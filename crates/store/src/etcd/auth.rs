//! Signing in to an etcd that has authentication enabled: a user name and password buy a
//! token at `/v3/auth/authenticate`, sent in the `Authorization` header of every call. etcd
//! forgets simple tokens when it restarts and after five idle minutes (`--auth-token-ttl`),
//! and JWT tokens expire; a call whose token is refused signs in again and is retried once.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use zeroize::Zeroizing;

/// A user name and its password. The password is wiped from memory when dropped, and
/// neither `Debug` nor any message shows it.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: Zeroizing<String>,
}

impl Credentials {
    /// The credentials of `user`.
    pub fn new(user: impl Into<String>, password: Zeroizing<String>) -> Self {
        Self { user: user.into(), password }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The body of an authenticate request, in a buffer wiped when dropped. The buffer is
    /// allocated large enough for the worst case of JSON escaping up front, so that growing
    /// it never leaves a copy of the password behind in freed memory.
    pub(super) fn request_body(&self) -> Zeroizing<Vec<u8>> {
        #[derive(Serialize)]
        struct Request<'a> {
            name: &'a str,
            password: &'a str,
        }
        // Each byte escapes to at most six (`\u001f`), plus the braces, keys and quotes.
        let capacity = 6 * (self.user.len() + self.password.len()) + 64;
        let mut body = Zeroizing::new(Vec::with_capacity(capacity));
        let request = Request { name: &self.user, password: &self.password };
        serde_json::to_writer(&mut *body, &request)
            .expect("serializing two strings into memory cannot fail");
        body
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// The token of the current sign-in, shared by a client's clones.
#[derive(Clone, Default)]
pub(super) struct Token(Arc<Mutex<Option<Arc<Zeroizing<String>>>>>);

impl Token {
    /// The token, if signed in.
    pub(super) fn current(&self) -> Option<Arc<Zeroizing<String>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Keeps a new token.
    pub(super) fn set(&self, token: Zeroizing<String>) -> Arc<Zeroizing<String>> {
        let token = Arc::new(token);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&token));
        token
    }

    /// Forgets `refused`, unless another call already replaced it.
    pub(super) fn forget(&self, refused: &Arc<Zeroizing<String>>) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|token| Arc::ptr_eq(token, refused)) {
            *current = None;
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.current().is_some() { "signed in" } else { "none" };
        f.debug_tuple("Token").field(&state).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_stays_out_of_debug_and_the_request_is_json() {
        let credentials = Credentials::new("root", Zeroizing::new("s3\"cret".to_owned()));
        let debug = format!("{credentials:?}");
        assert!(debug.contains("root") && !debug.contains("s3"), "{debug}");
        let body = credentials.request_body();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value, serde_json::json!({ "name": "root", "password": "s3\"cret" }));
        assert_eq!(body.capacity(), 6 * 11 + 64, "the buffer never grew");
    }

    #[test]
    fn a_refused_token_is_forgotten_only_if_still_current() {
        let token = Token::default();
        let first = token.set(Zeroizing::new("a".into()));
        let second = token.set(Zeroizing::new("b".into()));
        token.forget(&first);
        assert_eq!(token.current().as_deref().map(|t| t.as_str()), Some("b"));
        token.forget(&second);
        assert!(token.current().is_none());
        assert_eq!(format!("{token:?}"), "Token(\"none\")");
    }
}
