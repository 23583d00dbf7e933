// The hello service in JavaScript: every exported function is a method.
// Run by leverd through lever-serve (lever.json "jsEntry").
module.exports.sayHello = (name, cb) => {
  cb(null, `Hello, ${name}!`);
};
