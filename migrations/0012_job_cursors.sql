CREATE TABLE `job_cursors` (
	`name` text PRIMARY KEY NOT NULL,
	`window_start` integer NOT NULL,
	`phase` integer NOT NULL,
	`after_rowid` integer NOT NULL,
	`updated_at` integer NOT NULL
);
