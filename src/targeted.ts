/** Targeted cache-control fields (RFC 9213): `CDN-Cache-Control` and the like, read as Structured Field Dictionaries. */
import type { Directives } from './policy.js'

/** Directives whose value is delta-seconds: in a targeted field they must be non-negative Integers (RFC 9213 §2.1). */
const DELTA_DIRECTIVES = new Set(['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error'])

/** A bare item (RFC 8941 §3.3) as the text a directive value carries, or a boolean. */
type Bare = { kind: 'integer' | 'decimal' | 'string' | 'token' | 'bytes'; text: string } | { kind: 'boolean'; value: boolean }

/** A dictionary member value: an item or an inner list (parameters are read and dropped). */
type Member = Bare | { kind: 'list'; items: Bare[] }

/** Thrown inside the parser only; the field is then ignored as a whole. */
class Invalid extends Error {}

/** The value a header getter returns (`res.getHeader`, `Headers#get`). */
export type HeaderValue = string | string[] | number | undefined

/**
 * Parse one targeted field value (RFC 9213 §2.1) into the `Directives` shape of src/policy.ts:
 * `max-age=60` → `'60'`, a bare key or `?1` → `true`, `?0` → absent, strings, tokens and
 * byte sequences (base64 text) → their text, an inner list → its members joined by `', '`
 * (`true` when empty); parameters are ignored, and the last of duplicate keys wins (RFC 8941
 * §4.2.2). A delta-seconds directive (`max-age`, `s-maxage`, `stale-while-revalidate`,
 * `stale-if-error`) whose value is not a non-negative Integer is dropped (RFC 9213 §2.1).
 *
 * Returns undefined when the field is not a valid Dictionary, or is empty (RFC 8941 §3.2:
 * equivalent to an absent field): RFC 9213 §2.1 then ignores the whole field. Several field
 * lines are joined with commas (RFC 8941 §4.2). One pass: linear time on any input.
 */
export function parseTargetedField(value: string | readonly string[]): Directives | undefined {
  const text = typeof value === 'string' ? value : value.join(', ')
  let members: Map<string, Member>
  try {
    members = parseDictionary(text)
  } catch (error) {
    if (error instanceof Invalid) return undefined
    throw error
  }
  if (members.size === 0) return undefined
  const out: Directives = Object.create(null)
  for (const [key, member] of members) {
    const directive = toDirective(key, member)
    if (directive !== undefined) out[key] = directive
  }
  return out
}

/**
 * The targeted directives that speak for this cache (RFC 9213 §2.2): the first of `targets`
 * (field names, any case, most specific first, e.g. `['cachet-cache-control',
 * 'cdn-cache-control']`) present on the response with a valid, non-empty value. Returns the
 * field's lower-case name and its directives, or undefined when none applies (then
 * Cache-Control rules, as usual).
 *
 * Request flow, when the response head is about to go out:
 * ```ts
 * const targeted = targetedDirectives((name) => res.getHeader(name), targets)
 * storageDecision({ ...input, targeted: targeted?.directives })
 * ```
 * The field itself is left on the response: caches after this one may be targeted by it too.
 * `targets` should be checked once at construction (header names); this function never throws.
 */
export function targetedDirectives(
  getHeader: (name: string) => HeaderValue,
  targets: readonly string[],
): { field: string; directives: Directives } | undefined {
  for (const target of targets) {
    const field = target.toLowerCase()
    const raw = getHeader(field)
    if (raw === undefined) continue
    const directives = parseTargetedField(typeof raw === 'number' ? String(raw) : raw)
    if (directives !== undefined) return { field, directives }
  }
  return undefined
}

/** Convert one member to a directive value, or undefined to leave it out. */
function toDirective(key: string, member: Member): string | true | undefined {
  if (DELTA_DIRECTIVES.has(key)) {
    if (member.kind !== 'integer' || member.text.startsWith('-')) return undefined
    return member.text
  }
  if (member.kind === 'boolean') return member.value ? true : undefined
  if (member.kind === 'list') return member.items.length === 0 ? true : member.items.map(bareText).join(', ')
  return member.text
}

function bareText(item: Bare): string {
  return item.kind === 'boolean' ? (item.value ? '?1' : '?0') : item.text
}

/** RFC 8941 §4.2.2: a Dictionary. Keys are compared as they are; the last value of a key wins. */
function parseDictionary(text: string): Map<string, Member> {
  const p = new Parser(text)
  p.skipSpaces()
  const out = new Map<string, Member>()
  if (p.done()) return out
  for (;;) {
    const key = p.key()
    let member: Member
    if (p.peek() === 61 /* = */) {
      p.i++
      member = p.itemOrInnerList()
    } else {
      member = { kind: 'boolean', value: true }
      p.parameters()
    }
    out.set(key, member) // a duplicate overwrites the earlier value in place
    p.skipOws()
    if (p.done()) return out
    if (p.peek() !== 44 /* , */) throw new Invalid()
    p.i++
    p.skipOws()
    if (p.done()) throw new Invalid() // trailing comma
  }
}

/** A cursor over the field text; every method advances it or throws Invalid. */
class Parser {
  i = 0
  readonly n: number

  constructor(readonly text: string) {
    // RFC 8941 §4.2: leading and trailing SP are discarded.
    let end = text.length
    while (end > 0 && text.charCodeAt(end - 1) === 32) end--
    this.n = end
  }

  done(): boolean {
    return this.i >= this.n
  }

  peek(): number {
    return this.i < this.n ? this.text.charCodeAt(this.i) : -1
  }

  skipSpaces(): void {
    while (this.peek() === 32) this.i++
  }

  skipOws(): void {
    for (let c = this.peek(); c === 32 || c === 9; c = this.peek()) this.i++
  }

  /** RFC 8941 §4.2.3.3: `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`. */
  key(): string {
    const start = this.i
    const c = this.peek()
    if (!((c >= 97 && c <= 122) || c === 42)) throw new Invalid()
    this.i++
    while (this.i < this.n && isKeyChar(this.text.charCodeAt(this.i))) this.i++
    return this.text.slice(start, this.i)
  }

  /** RFC 8941 §4.2.1.1 / §4.2.3: an inner list or an item, each followed by parameters. */
  itemOrInnerList(): Member {
    if (this.peek() !== 40 /* ( */) {
      const item = this.bareItem()
      this.parameters()
      return item
    }
    this.i++
    const items: Bare[] = []
    for (;;) {
      this.skipSpaces()
      if (this.peek() === 41 /* ) */) {
        this.i++
        this.parameters()
        return { kind: 'list', items }
      }
      items.push(this.bareItem())
      this.parameters()
      const c = this.peek()
      if (c !== 32 && c !== 41) throw new Invalid()
    }
  }

  /** RFC 8941 §4.2.3.2: `*( ";" *SP key [ "=" bare-item ] )`, read and dropped. */
  parameters(): void {
    while (this.peek() === 59 /* ; */) {
      this.i++
      this.skipSpaces()
      this.key()
      if (this.peek() === 61 /* = */) {
        this.i++
        this.bareItem()
      }
    }
  }

  /** RFC 8941 §4.2.3.1. */
  bareItem(): Bare {
    const c = this.peek()
    if (c === 45 /* - */ || (c >= 48 && c <= 57)) return this.number()
    if (c === 34 /* " */) return this.string()
    if (c === 42 /* * */ || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)) return this.token()
    if (c === 58 /* : */) return this.bytes()
    if (c === 63 /* ? */) return this.boolean()
    throw new Invalid()
  }

  /** RFC 8941 §4.2.4: at most 15 integer digits, or 12 + up to 3 decimal digits. */
  number(): Bare {
    const start = this.i
    if (this.peek() === 45) this.i++
    const digitsStart = this.i
    while (isDigit(this.peek())) {
      this.i++
      if (this.i - digitsStart > 15) throw new Invalid()
    }
    const intDigits = this.i - digitsStart
    if (intDigits === 0) throw new Invalid()
    if (this.peek() !== 46 /* . */) return { kind: 'integer', text: String(Number(this.text.slice(start, this.i))) }
    if (intDigits > 12) throw new Invalid()
    this.i++
    const fracStart = this.i
    while (isDigit(this.peek())) {
      this.i++
      if (this.i - fracStart > 3) throw new Invalid()
    }
    if (this.i === fracStart) throw new Invalid()
    return { kind: 'decimal', text: this.text.slice(start, this.i) }
  }

  /** RFC 8941 §4.2.5: printable ASCII; only `\"` and `\\` escapes. */
  string(): Bare {
    this.i++
    const parts: string[] = []
    let run = this.i
    while (this.i < this.n) {
      const c = this.text.charCodeAt(this.i)
      if (c === 92 /* \ */) {
        const next = this.text.charCodeAt(this.i + 1)
        if (this.i + 1 >= this.n || (next !== 34 && next !== 92)) throw new Invalid()
        parts.push(this.text.slice(run, this.i))
        run = this.i + 1
        this.i += 2
      } else if (c === 34) {
        parts.push(this.text.slice(run, this.i))
        this.i++
        return { kind: 'string', text: parts.join('') }
      } else if (c < 0x20 || c > 0x7e) {
        throw new Invalid()
      } else {
        this.i++
      }
    }
    throw new Invalid()
  }

  /** RFC 8941 §4.2.6: `( ALPHA / "*" ) *( tchar / ":" / "/" )`. */
  token(): Bare {
    const start = this.i
    this.i++
    while (this.i < this.n && isTokenChar(this.text.charCodeAt(this.i))) this.i++
    return { kind: 'token', text: this.text.slice(start, this.i) }
  }

  /** RFC 8941 §4.2.7: `:` base64 `:`. */
  bytes(): Bare {
    this.i++
    const start = this.i
    while (this.i < this.n && isBase64Char(this.text.charCodeAt(this.i))) this.i++
    if (this.peek() !== 58) throw new Invalid()
    const text = this.text.slice(start, this.i)
    this.i++
    return { kind: 'bytes', text }
  }

  /** RFC 8941 §4.2.8: `?1` or `?0`. */
  boolean(): Bare {
    const c = this.text.charCodeAt(this.i + 1)
    if (this.i + 1 >= this.n || (c !== 48 && c !== 49)) throw new Invalid()
    this.i += 2
    return { kind: 'boolean', value: c === 49 }
  }
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57
}

function isKeyChar(c: number): boolean {
  return (c >= 97 && c <= 122) || isDigit(c) || c === 95 || c === 45 || c === 46 || c === 42
}

/** tchar (RFC 9110 §5.6.2) plus `:` and `/`. */
function isTokenChar(c: number): boolean {
  if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122) || isDigit(c)) return true
  return c === 58 || c === 47 || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c))
}

function isBase64Char(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || isDigit(c) || c === 43 || c === 47 || c === 61
}
