-- PostgreSQL init script (mounted into /docker-entrypoint-initdb.d): runs once, when the data
-- volume is first initialised. sellwindow's own database, owned by its own role, so the
-- application cannot touch Temporal's databases. The worker and the API apply the migrations
-- (sqlx) at start-up. Keep the password in step with DATABASE_URL in docker-compose.yml.
CREATE ROLE sellwindow LOGIN PASSWORD 'sellwindow';
CREATE DATABASE sellwindow OWNER sellwindow;
