import { BadRequestException } from '@nestjs/common';

export interface User {
  id: number;
  name: string;
  email: string;
  createdAt: Date;
  updatedAt: Date;
}

/** Which server answered: its port and whether it is a replica (`pg_is_in_recovery()`). */
export interface ServedBy {
  port: number;
  replica: boolean;
}

/** Every response of the users endpoints: the data plus the server that produced it. */
export interface Served<T> {
  data: T;
  servedBy: ServedBy;
}

export interface CreateUserInput {
  name: string;
  email: string;
}

export type UpdateUserInput = Partial<CreateUserInput>;

export interface Page {
  limit: number;
  offset: number;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const MAX_ID = 2_147_483_647;

function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

function invalid(field: string, expected: string, value: unknown): BadRequestException {
  return new BadRequestException(`Invalid ${field}: expected ${expected}, got ${shown(value)}.`);
}

function bodyObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw invalid('body', 'a JSON object', body);
  return body as Record<string, unknown>;
}

function name(value: unknown): string {
  if (typeof value !== 'string' || value.trim().length === 0 || value.trim().length > 200) {
    throw invalid('name', 'a string of 1 to 200 characters', value);
  }
  return value.trim();
}

function email(value: unknown): string {
  if (typeof value !== 'string' || value.length > 320 || !EMAIL.test(value.trim())) {
    throw invalid('email', 'an e-mail address such as "ada@example.com"', value);
  }
  return value.trim().toLowerCase();
}

function rejectUnknown(body: Record<string, unknown>): void {
  const unknown = Object.keys(body).filter((key) => key !== 'name' && key !== 'email');
  if (unknown.length > 0) throw invalid('body', 'only the fields name and email', Object.fromEntries(unknown.map((k) => [k, body[k]])));
}

export function parseCreateUser(body: unknown): CreateUserInput {
  const given = bodyObject(body);
  rejectUnknown(given);
  return { name: name(given.name), email: email(given.email) };
}

export function parseUpdateUser(body: unknown): UpdateUserInput {
  const given = bodyObject(body);
  rejectUnknown(given);
  if (given.name === undefined && given.email === undefined) throw invalid('body', 'at least one of name and email', given);
  return {
    ...(given.name === undefined ? {} : { name: name(given.name) }),
    ...(given.email === undefined ? {} : { email: email(given.email) }),
  };
}

export function parseId(value: string): number {
  const id = /^[0-9]{1,10}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(id) || id < 1 || id > MAX_ID) throw invalid('id', `an integer from 1 to ${MAX_ID}`, value);
  return id;
}

function integerQuery(field: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = /^[0-9]{1,10}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw invalid(field, `an integer from ${min} to ${max}`, value);
  return n;
}

export function parsePage(limit: string | undefined, offset: string | undefined): Page {
  return { limit: integerQuery('limit', limit, 50, 1, 100), offset: integerQuery('offset', offset, 0, 0, 1_000_000) };
}
