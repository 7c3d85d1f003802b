// The installed package loaded with require(); prints the report of consumer.check.cjs.
require('./consumer.check.cjs')(require('cachet')).then(
  (report) => console.log(JSON.stringify(report)),
  (error) => {
    console.error(error)
    process.exit(1)
  },
)
