// The project's own checks, run by `npm run lint` (after `prettier --check`): cheap, mechanical rules of the codebase.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import ts from 'typescript'

/** Functions of the library that take more than five parameters: pass an object instead. */
function wideFunctions(file, text) {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
  const found = []
  const visit = (node) => {
    if (ts.isFunctionLike(node) && node.parameters !== undefined && node.parameters.length > 5) {
      const { line } = source.getLineAndCharacterOfPosition(node.getStart())
      found.push(`${file}:${line + 1}: a function of ${node.parameters.length} parameters (at most 5: pass an object)`)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', 'src', 'test', 'examples', 'README.md'], { encoding: 'utf8' })
  .split('\n')
  .filter((f) => f !== '' && !f.includes('node_modules') && !f.startsWith('test/bench/results/'))
const problems = []
for (const file of files) {
  let text
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    continue // deleted in the work tree
  }
  const lines = text.split('\n')
  // Documents that do not ship are never cited: cite an RFC section or the project's own files.
  lines.forEach((line, i) => {
    if (/\b(DESIGN|HTTP-CACHING|STYLE)\.md\b/.test(line)) problems.push(`${file}:${i + 1}: cites a document that does not ship`)
  })
  if (!/\.(ts|mjs)$/.test(file)) continue
  // Each module opens with one line saying what it holds.
  if (file.startsWith('src/') && !lines[0].startsWith('/**')) problems.push(`${file}:1: opens without a one-line /** … */ saying what it holds`)
  if (file.startsWith('test/')) {
    lines.forEach((line, i) => {
      if (/\b(it|describe|context)\.(only|skip)\(/.test(line)) problems.push(`${file}:${i + 1}: .only/.skip: every test runs`)
    })
  }
  if (file.startsWith('src/')) {
    lines.forEach((line, i) => {
      if (/\bconsole\.(log|error|warn)\(/.test(line)) problems.push(`${file}:${i + 1}: console output in the library (use debug or onError)`)
    })
    problems.push(...wideFunctions(file, text))
  }
}
if (problems.length > 0) {
  console.error(problems.join('\n'))
  console.error(`lint: ${problems.length} problem(s)`)
  process.exit(1)
}
console.log(`lint: ${files.length} files, no problems`)
