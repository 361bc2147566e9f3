//! The store against real databases: SQLite files, and PostgreSQL when
//! `SELLWINDOW_TEST_POSTGRES_URL` names one.

mod notify;
mod opening;
mod reserve;
