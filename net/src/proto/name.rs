//! [`Name`]: the string type of topics and node names in frames and events.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use smol_str::SmolStr;

/// A topic or a node name, as frames and events carry it.
///
/// Every message a node delivers carries two of them (its producer's name
/// and its topic), so they must be cheap to clone and to drop on another
/// thread: a name of up to 23 bytes is stored inline, and cloning it copies
/// it, with no reference count that the thread delivering messages and the
/// thread reading them would both write. A longer name is one shared,
/// reference-counted allocation.
///
/// It reads as a `&str` (`Deref`), compares with `str`, and is made from
/// `&str` or `String` with `into()`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(SmolStr);

impl Name {
    /// A name holding `s`.
    pub fn new(s: &str) -> Self {
        Self(SmolStr::new(s))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Self(SmolStr::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Self::new(s)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0.into()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_read_compare_and_convert_alike() {
        let long = "a-topic-name-longer-than-twenty-three-bytes";
        for s in ["", "t", "orders.eu-west", long] {
            let name = Name::from(s);
            assert_eq!(&*name, s);
            assert_eq!(name, s);
            assert_eq!(s, name);
            assert_eq!(name.clone(), Name::from(s.to_string()));
            assert_eq!(String::from(name.clone()), s);
            assert_eq!(format!("{name}"), s);
            assert_eq!(format!("{name:?}"), format!("{s:?}"));
        }
        assert_ne!(Name::from("t"), Name::from("u"));
    }
}
