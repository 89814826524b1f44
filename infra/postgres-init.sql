-- Second database for the Prefect server beside the platform's own.
CREATE DATABASE prefect OWNER agency;
