//! The database as the use cases use it: [`Db`]'s calls with `ApiError` as the error type, so
//! that a closure's `?` needs no annotation.

use std::ops::Deref;

use crate::db::{Db, DbConnection};
use crate::error::ApiResult;

#[derive(Clone)]
pub struct Store(pub Db);

impl Store {
    pub async fn read<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.read(f).await
    }

    pub async fn read_snapshot<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.read_snapshot(f).await
    }

    pub async fn write<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.write(f).await
    }

    pub fn write_blocking<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.write_blocking(f)
    }

    pub fn read_blocking<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T>,
    {
        self.0.read_blocking(f)
    }
}

impl Deref for Store {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.0
    }
}
