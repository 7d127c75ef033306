//! Test support shared by the unit tests of this crate: an in-memory directory.

use crate::model::User;
use crate::store::{Directory, StoreError};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// An in-memory directory, enough to exercise the gate and the authorizer.
#[derive(Default)]
pub(crate) struct Memory(Mutex<BTreeMap<String, User>>);

impl Directory for Memory {
    fn backend(&self) -> &'static str {
        "memory"
    }
    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self.0.lock().unwrap().get(name).cloned())
    }
    fn users(&self) -> Result<Vec<User>, StoreError> {
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }
    fn create(&self, user: &User) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(user.name.clone(), user.clone());
        Ok(())
    }
    fn remove(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.0.lock().unwrap().remove(name).is_some())
    }
    fn update(&self, name: &str, change: &mut dyn FnMut(&mut User) -> bool) -> Result<bool, StoreError> {
        Ok(self.0.lock().unwrap().get_mut(name).map(change).is_some())
    }
}
