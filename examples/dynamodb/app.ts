/** The blog API of examples/invalidate, cached in a DynamoDB table that every process shares. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { dynamodbStore, responseCache, type Store } from '../../src/index.js'
import { createApp as createBlogApp, type Post } from '../invalidate/app.js'

export type { Post }

/** The blog app on a store (here one made by dynamodbStore; any store works the same way). */
export function createApp(store: Store, posts?: Post[]) {
  return createBlogApp(responseCache({ store }), posts)
}

// `tsx examples/dynamodb/app.ts` runs it against DynamoDB with the usual AWS credentials, or against
// a local one (dynalite, DynamoDB Local) at DYNAMODB_ENDPOINT, with any AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY. The table (DYNAMODB_TABLE, default cachet) is created on first use when missing.
if (import.meta.url === `file://${process.argv[1]}`) {
  const client = new DynamoDBClient({
    endpoint: process.env.DYNAMODB_ENDPOINT,
    region: process.env.AWS_REGION ?? 'us-east-1',
    maxAttempts: 2,
  })
  const { app } = createApp(dynamodbStore({ client, table: process.env.DYNAMODB_TABLE ?? 'cachet' }, { prefix: 'blog:' }))
  const port = Number(process.env.PORT ?? 3000)
  app.listen(port, () => console.log(`http://localhost:${port}/posts (X-Cache shows MISS, then HIT)`))
}
