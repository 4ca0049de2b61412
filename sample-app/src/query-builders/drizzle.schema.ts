import { bigint, integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** The sample's tables as Drizzle sees them (created by UsersSchema). */
export const users = pgTable('users', {
  id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
  name: text('name').notNull(),
  email: text('email').notNull().unique(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

export const userEvents = pgTable('user_events', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  userId: integer('user_id').notNull(),
  kind: text('kind', { enum: ['created', 'updated', 'deleted'] }).notNull(),
  at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
});

export const sampleSchema = { users, userEvents };
