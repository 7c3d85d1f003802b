// The installed package loaded with import; prints the report of consumer.check.cjs.
import * as cachet from 'cachet'
import check from './consumer.check.cjs'

console.log(JSON.stringify(await check(cachet)))
