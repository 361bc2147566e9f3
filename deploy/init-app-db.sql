-- Runs once, when the PostgreSQL volume is first initialised: sellwindow's own database.
CREATE DATABASE sellwindow;
