const {slug} = require('../src/slug');

describe('slug', () => {
  test.each([
    ['Hello, World!', 'hello-world'],
    ['Crème brûlée', 'creme-brulee'],
    ['  many   spaces  ', 'many-spaces'],
  ])('slug(%j) is %j', (title, expected) => {
    expect(slug(title)).toBe(expected);
  });
});
